#include "split_patterns.h"

#include "speechlens/text/unicode.h"

namespace speechlens::text::detail {

namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_other(char32_t c) { return !is_whitespace(c) && !is_letter(c) && !is_number(c); }
bool is_newline(char32_t c) { return c == U'\r' || c == U'\n'; }

// Case-insensitive comparison for the contraction suffixes (ASCII letters; U+017F LONG S folds
// to 's' and U+212A KELVIN SIGN to 'k' under Unicode case folding, as Oniguruma's (?i) does).
bool equals_folded(char32_t c, char32_t lower_ascii) {
  if (c == lower_ascii || c == lower_ascii - 32) return true;
  return lower_ascii == U's' && c == 0x17F;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) starting at i, or 0.
std::size_t match_contraction(std::u32string_view t, std::size_t i, bool ignore_case) {
  if (t[i] != U'\'') return 0;
  static constexpr std::u32string_view kSuffixes[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
  for (std::u32string_view suffix : kSuffixes) {
    if (i + 1 + suffix.size() > t.size()) continue;
    bool same = true;
    for (std::size_t k = 0; k < suffix.size() && same; ++k) {
      const char32_t c = t[i + 1 + k];
      same = ignore_case ? equals_folded(c, suffix[k]) : c == suffix[k];
    }
    if (same) return 1 + suffix.size();
  }
  return 0;
}

template <typename Pred>
std::size_t run_end(std::u32string_view t, std::size_t i, Pred pred) {
  while (i < t.size() && pred(t[i])) ++i;
  return i;
}

// ` ?X+` for a character class X: an optional single space, then one or more X.
template <typename Pred>
std::size_t match_space_then_run(std::u32string_view t, std::size_t i, Pred pred) {
  if (t[i] == U' ' && i + 1 < t.size() && pred(t[i + 1])) return run_end(t, i + 1, pred) - i;
  if (pred(t[i])) return run_end(t, i, pred) - i;
  return 0;
}

// `\s+(?!\S)` then `\s+`: a whitespace run, leaving its last character to the next piece when
// the run is followed by a non-space (so " word" keeps its space), unless that leaves nothing.
std::size_t match_whitespace(std::u32string_view t, std::size_t i) {
  const std::size_t end = run_end(t, i, is_whitespace);
  const std::size_t length = end - i;
  if (length == 0) return 0;
  if (end == t.size() || length == 1) return length;
  return length - 1;
}

std::size_t match_gpt2(std::u32string_view t, std::size_t i) {
  if (std::size_t n = match_contraction(t, i, /*ignore_case=*/false)) return n;
  if (std::size_t n = match_space_then_run(t, i, is_letter)) return n;
  if (std::size_t n = match_space_then_run(t, i, is_number)) return n;
  if (std::size_t n = match_space_then_run(t, i, is_other)) return n;
  return match_whitespace(t, i);
}

std::size_t match_qwen2(std::u32string_view t, std::size_t i) {
  if (std::size_t n = match_contraction(t, i, /*ignore_case=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const char32_t c = t[i];
  if (!is_newline(c) && !is_letter(c) && !is_number(c) && i + 1 < t.size() &&
      is_letter(t[i + 1])) {
    return run_end(t, i + 1, is_letter) - i;
  }
  if (is_letter(c)) return run_end(t, i, is_letter) - i;
  // \p{N}: digits one at a time.
  if (is_number(c)) return 1;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  if (std::size_t n = match_space_then_run(t, i, is_other)) return run_end(t, i + n, is_newline) - i;
  // \s*[\r\n]+: backtracking leaves the whitespace run at its last newline.
  const std::size_t ws_end = run_end(t, i, is_whitespace);
  for (std::size_t k = ws_end; k > i; --k) {
    if (is_newline(t[k - 1])) return k - i;
  }
  return match_whitespace(t, i);
}

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

std::string_view split_pattern_regex(SplitPattern pattern) {
  return pattern == SplitPattern::kGpt2 ? kGpt2Regex : kQwen2Regex;
}

std::vector<std::pair<std::size_t, std::size_t>> split_with_pattern(std::u32string_view text,
                                                                     SplitPattern pattern) {
  std::vector<std::pair<std::size_t, std::size_t>> pieces;
  std::size_t gap_begin = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t length =
        pattern == SplitPattern::kGpt2 ? match_gpt2(text, i) : match_qwen2(text, i);
    if (length == 0) {
      ++i;
      continue;
    }
    if (gap_begin < i) pieces.emplace_back(gap_begin, i);
    pieces.emplace_back(i, i + length);
    i += length;
    gap_begin = i;
  }
  if (gap_begin < text.size()) pieces.emplace_back(gap_begin, text.size());
  return pieces;
}

}  // namespace speechlens::text::detail
