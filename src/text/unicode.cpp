#include "speechlens/text/unicode.h"

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "speechlens/util/error.h"
#include "unicode_tables.h"

namespace speechlens::text {

namespace {

using detail::CodePointRange;

bool in_ranges(char32_t code_point, const CodePointRange* ranges, std::size_t size) {
  const CodePointRange* end = ranges + size;
  // First range whose last code point is >= code_point.
  const CodePointRange* it = std::lower_bound(
      ranges, end, code_point, [](const CodePointRange& r, char32_t cp) { return r.last < cp; });
  return it != end && it->first <= code_point;
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr char32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr char32_t kHangulNCount = kHangulVCount * kHangulTCount;
constexpr char32_t kHangulSCount = kHangulLCount * kHangulNCount;

// Below U+0300 there are no combining marks and no decomposable characters that NFC changes,
// so text made only of such code points is already in NFC.
constexpr char32_t kFirstNfcSensitiveCodePoint = 0x300;

void append_decomposition(std::u32string& out, char32_t cp) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    const char32_t index = cp - kHangulSBase;
    out.push_back(kHangulLBase + index / kHangulNCount);
    out.push_back(kHangulVBase + (index % kHangulNCount) / kHangulTCount);
    if (index % kHangulTCount != 0) out.push_back(kHangulTBase + index % kHangulTCount);
    return;
  }
  const auto* begin = detail::kDecompositions;
  const auto* end = begin + detail::kDecompositions_size;
  const auto* it = std::lower_bound(begin, end, cp, [](const detail::Decomposition& d, char32_t c) {
    return d.code_point < c;
  });
  if (it != end && it->code_point == cp) {
    out.append(detail::kDecompositionPool + it->offset, it->length);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (first, second), or 0 when there is none.
char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kHangulLBase && first < kHangulLBase + kHangulLCount && second >= kHangulVBase &&
      second < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((first - kHangulLBase) * kHangulVCount + (second - kHangulVBase)) *
                              kHangulTCount;
  }
  if (first >= kHangulSBase && first < kHangulSBase + kHangulSCount &&
      (first - kHangulSBase) % kHangulTCount == 0 && second > kHangulTBase &&
      second < kHangulTBase + kHangulTCount) {
    return first + (second - kHangulTBase);
  }
  const auto* begin = detail::kCompositions;
  const auto* end = begin + detail::kCompositions_size;
  const auto* it = std::lower_bound(begin, end, std::pair{first, second},
                                    [](const detail::Composition& c, std::pair<char32_t, char32_t> k) {
                                      return std::pair{c.first, c.second} < k;
                                    });
  if (it != end && it->first == first && it->second == second) return it->composite;
  return 0;
}

}  // namespace

std::u32string utf8_to_code_points(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(utf8.data());
  const std::size_t n = utf8.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char lead = bytes[i];
    std::size_t length = 0;
    char32_t cp = 0;
    char32_t min_value = 0;
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, cp = lead & 0x1F, min_value = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, cp = lead & 0x0F, min_value = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, cp = lead & 0x07, min_value = 0x10000;
    }
    bool valid = length != 0 && i + length <= n;
    for (std::size_t k = 1; valid && k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) valid = false;
      cp = (cp << 6) | (bytes[i + k] & 0x3F);
    }
    if (!valid || cp < min_value || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      throw InvalidInput(fmt::format(
          "text is not valid UTF-8: malformed sequence at byte {} (lead byte 0x{:02X}); "
          "tokenizers take UTF-8 text, convert the input encoding first",
          i, lead));
    }
    out.push_back(cp);
    i += length;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string code_points_to_utf8(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t cp : code_points) append_utf8(out, cp);
  return out;
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(cp, detail::kLetterRanges, detail::kLetterRanges_size);
}

bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(cp, detail::kNumberRanges, detail::kNumberRanges_size);
}

bool is_whitespace(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::uint8_t canonical_combining_class(char32_t cp) {
  if (cp < kFirstNfcSensitiveCodePoint) return 0;
  const auto* begin = detail::kCombiningClassRanges;
  const auto* end = begin + detail::kCombiningClassRanges_size;
  const auto* it = std::lower_bound(begin, end, cp, [](const detail::CombiningClassRange& r,
                                                       char32_t c) { return r.last < c; });
  return (it != end && it->first <= cp) ? it->combining_class : 0;
}

std::u32string normalize_nfc(std::u32string_view input) {
  if (std::all_of(input.begin(), input.end(),
                  [](char32_t cp) { return cp < kFirstNfcSensitiveCodePoint; })) {
    return std::u32string(input);
  }
  // 1. Canonical decomposition.
  std::u32string text;
  text.reserve(input.size() + 8);
  for (char32_t cp : input) append_decomposition(text, cp);
  // 2. Canonical ordering: stable sort of every run of non-starters by combining class.
  for (std::size_t i = 0; i < text.size();) {
    if (canonical_combining_class(text[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && canonical_combining_class(text[j]) != 0) ++j;
    std::stable_sort(text.begin() + static_cast<std::ptrdiff_t>(i),
                     text.begin() + static_cast<std::ptrdiff_t>(j), [](char32_t a, char32_t b) {
                       return canonical_combining_class(a) < canonical_combining_class(b);
                     });
    i = j;
  }
  // 3. Canonical composition: each character joins the last starter unless blocked by a
  // character in between of equal or higher combining class (or a starter).
  std::u32string out;
  out.reserve(text.size());
  std::ptrdiff_t starter = -1;
  int last_class = -1;  // combining class of the last character kept after the starter
  for (char32_t cp : text) {
    const int cls = canonical_combining_class(cp);
    if (starter >= 0) {
      const bool blocked = last_class != -1 && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (char32_t composite = compose_pair(out[static_cast<std::size_t>(starter)], cp)) {
          out[static_cast<std::size_t>(starter)] = composite;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = static_cast<std::ptrdiff_t>(out.size());
      last_class = -1;
    } else {
      last_class = cls;
    }
    out.push_back(cp);
  }
  return out;
}

std::string normalize_nfc(std::string_view utf8) {
  const bool ascii_only = std::all_of(utf8.begin(), utf8.end(),
                                      [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii_only) return std::string(utf8);
  return code_points_to_utf8(normalize_nfc(utf8_to_code_points(utf8)));
}

const char* unicode_version() { return detail::kUnicodeVersion; }

}  // namespace speechlens::text
