#include "speechlens/text/whisper_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <utility>

#include <fmt/format.h>
#include "speechlens/util/error.h"

namespace speechlens::text {

namespace {

// Whisper's languages in token order (transformers' LANGUAGES; "yue" only in large-v3).
constexpr std::array<std::pair<std::string_view, std::string_view>, 100> kLanguages{{
    {"en", "english"}, {"zh", "chinese"}, {"de", "german"}, {"es", "spanish"},
    {"ru", "russian"}, {"ko", "korean"}, {"fr", "french"}, {"ja", "japanese"},
    {"pt", "portuguese"}, {"tr", "turkish"}, {"pl", "polish"}, {"ca", "catalan"},
    {"nl", "dutch"}, {"ar", "arabic"}, {"sv", "swedish"}, {"it", "italian"},
    {"id", "indonesian"}, {"hi", "hindi"}, {"fi", "finnish"}, {"vi", "vietnamese"},
    {"he", "hebrew"}, {"uk", "ukrainian"}, {"el", "greek"}, {"ms", "malay"},
    {"cs", "czech"}, {"ro", "romanian"}, {"da", "danish"}, {"hu", "hungarian"},
    {"ta", "tamil"}, {"no", "norwegian"}, {"th", "thai"}, {"ur", "urdu"},
    {"hr", "croatian"}, {"bg", "bulgarian"}, {"lt", "lithuanian"}, {"la", "latin"},
    {"mi", "maori"}, {"ml", "malayalam"}, {"cy", "welsh"}, {"sk", "slovak"},
    {"te", "telugu"}, {"fa", "persian"}, {"lv", "latvian"}, {"bn", "bengali"},
    {"sr", "serbian"}, {"az", "azerbaijani"}, {"sl", "slovenian"}, {"kn", "kannada"},
    {"et", "estonian"}, {"mk", "macedonian"}, {"br", "breton"}, {"eu", "basque"},
    {"is", "icelandic"}, {"hy", "armenian"}, {"ne", "nepali"}, {"mn", "mongolian"},
    {"bs", "bosnian"}, {"kk", "kazakh"}, {"sq", "albanian"}, {"sw", "swahili"},
    {"gl", "galician"}, {"mr", "marathi"}, {"pa", "punjabi"}, {"si", "sinhala"},
    {"km", "khmer"}, {"sn", "shona"}, {"yo", "yoruba"}, {"so", "somali"},
    {"af", "afrikaans"}, {"oc", "occitan"}, {"ka", "georgian"}, {"be", "belarusian"},
    {"tg", "tajik"}, {"sd", "sindhi"}, {"gu", "gujarati"}, {"am", "amharic"},
    {"yi", "yiddish"}, {"lo", "lao"}, {"uz", "uzbek"}, {"fo", "faroese"},
    {"ht", "haitian creole"}, {"ps", "pashto"}, {"tk", "turkmen"}, {"nn", "nynorsk"},
    {"mt", "maltese"}, {"sa", "sanskrit"}, {"lb", "luxembourgish"}, {"my", "myanmar"},
    {"bo", "tibetan"}, {"tl", "tagalog"}, {"mg", "malagasy"}, {"as", "assamese"},
    {"tt", "tatar"}, {"haw", "hawaiian"}, {"ln", "lingala"}, {"ha", "hausa"},
    {"ba", "bashkir"}, {"jw", "javanese"}, {"su", "sundanese"}, {"yue", "cantonese"},
}};

// Extra names transformers accepts (TO_LANGUAGE_CODE).
constexpr std::array<std::pair<std::string_view, std::string_view>, 12> kLanguageAliases{{
    {"burmese", "my"}, {"valencian", "ca"}, {"flemish", "nl"}, {"haitian", "ht"},
    {"letzeburgesch", "lb"}, {"pushto", "ps"}, {"panjabi", "pa"}, {"moldavian", "ro"},
    {"moldovan", "ro"}, {"sinhalese", "si"}, {"castilian", "es"}, {"mandarin", "zh"},
}};

constexpr std::int64_t kEnglishOnlyEndOfTextId = 50256;

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<std::string_view> language_code(std::string_view language) {
  const std::string key = lower(language);
  for (const auto& [code, name] : kLanguages) {
    if (key == code || key == name) return code;
  }
  for (const auto& [alias, code] : kLanguageAliases) {
    if (key == alias) return code;
  }
  return std::nullopt;
}

// Removes "<|digits.digits|>" as HF's timestamp_pat does (ASCII digits).
std::string remove_timestamp_text(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  auto digits_end = [&](std::size_t p) {
    while (p < text.size() && std::isdigit(static_cast<unsigned char>(text[p]))) ++p;
    return p;
  };
  while (i < text.size()) {
    if (text.compare(i, 2, "<|") == 0) {
      const std::size_t int_end = digits_end(i + 2);
      if (int_end > i + 2 && int_end < text.size() && text[int_end] == '.') {
        const std::size_t frac_end = digits_end(int_end + 1);
        if (frac_end > int_end + 1 && text.compare(frac_end, 2, "|>") == 0) {
          i = frac_end + 2;
          continue;
        }
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

}  // namespace

WhisperTokenizer WhisperTokenizer::from_dir(const std::filesystem::path& dir,
                                            std::optional<bool> multilingual) {
  return WhisperTokenizer(BpeTokenizer::from_dir(dir), multilingual);
}

WhisperTokenizer::WhisperTokenizer(BpeTokenizer bpe, std::optional<bool> multilingual)
    : bpe_(std::move(bpe)) {
  eot_ = special_token("<|endoftext|>");
  sot_ = special_token("<|startoftranscript|>");
  transcribe_ = special_token("<|transcribe|>");
  translate_ = special_token("<|translate|>");
  sot_prev_ = special_token("<|startofprev|>");
  sot_lm_ = special_token("<|startoflm|>");
  no_timestamps_ = special_token("<|notimestamps|>");
  if (auto id = bpe_.token_to_id("<|nospeech|>")) {
    no_speech_ = *id;
  } else {
    no_speech_ = special_token("<|nocaptions|>");
  }
  multilingual_ = multilingual.value_or(eot_ != kEnglishOnlyEndOfTextId);
}

std::vector<std::int64_t> WhisperTokenizer::encode(std::string_view text) const {
  return bpe_.encode(text);
}

std::string WhisperTokenizer::decode(const std::vector<std::int64_t>& ids,
                                     bool skip_special_tokens) const {
  std::vector<std::int64_t> kept = ids;
  if (skip_special_tokens && !kept.empty() && kept.front() == sot_prev_) {
    auto sot = std::find(kept.begin(), kept.end(), sot_);
    kept.erase(kept.begin(), sot);
  }
  return remove_timestamp_text(bpe_.decode(kept, skip_special_tokens));
}

std::vector<std::int64_t> WhisperTokenizer::sot_sequence(std::optional<std::string> language,
                                                         const std::string& task,
                                                         bool timestamps) const {
  if (task != "transcribe" && task != "translate") {
    throw InvalidInput(fmt::format("unsupported Whisper task \"{}\": use \"transcribe\" or \"translate\"", task));
  }
  std::vector<std::int64_t> sequence{sot_};
  if (multilingual_) {
    if (language) sequence.push_back(language_token(*language));
    sequence.push_back(task == "transcribe" ? transcribe_ : translate_);
  } else {
    if (language && language_code(*language) != std::optional<std::string_view>("en")) {
      throw InvalidInput(fmt::format(
          "this is an English-only Whisper vocabulary; it cannot take language \"{}\" (pass no "
          "language or \"en\")",
          *language));
    }
    if (task != "transcribe") {
      throw InvalidInput("this is an English-only Whisper vocabulary; it can only transcribe");
    }
  }
  if (!timestamps) sequence.push_back(no_timestamps_);
  return sequence;
}

std::int64_t WhisperTokenizer::special_token(std::string_view content) const {
  if (auto id = bpe_.token_to_id(content)) return *id;
  std::string known;
  for (const auto& token : bpe_.added_tokens()) {
    if (token.special && known.size() < 200) known += (known.empty() ? "" : ", ") + token.content;
  }
  throw NameError(fmt::format("token \"{}\" is not in this Whisper vocabulary (special tokens: {}{})",
                              content, known, known.size() >= 200 ? ", ..." : ""));
}

std::optional<std::int64_t> WhisperTokenizer::language_token_at(std::size_t index) const {
  // HF places language i at <|startoftranscript|> + 1 + i rather than looking up "<|code|>":
  // some vocabularies spell a code differently (faster-whisper's has <|iw|> for Hebrew). A
  // vocabulary with fewer languages (no <|yue|> before large-v3) has a task token there instead.
  const std::int64_t id = sot_ + 1 + static_cast<std::int64_t>(index);
  if (!bpe_.has_id(id)) return std::nullopt;
  const std::string token = bpe_.id_to_token(id);
  const bool looks_like_language =
      token.size() >= 6 && token.size() <= 7 && token.rfind("<|", 0) == 0 &&
      token.compare(token.size() - 2, 2, "|>") == 0 &&
      std::all_of(token.begin() + 2, token.end() - 2, [](char c) { return c >= 'a' && c <= 'z'; });
  if (!looks_like_language) return std::nullopt;
  return id;
}

std::int64_t WhisperTokenizer::language_token(std::string_view language) const {
  const auto code = language_code(language);
  if (!code) {
    throw NameError(fmt::format(
        "unknown Whisper language \"{}\": pass a code such as \"en\", \"de\", \"zh\" or an English "
        "name such as \"german\"",
        language));
  }
  for (std::size_t i = 0; i < kLanguages.size(); ++i) {
    if (kLanguages[i].first != *code) continue;
    if (auto id = language_token_at(i)) return *id;
  }
  throw NameError(fmt::format("language \"{}\" has no token in this Whisper vocabulary ({} languages)",
                              *code, language_codes().size()));
}

std::vector<std::string> WhisperTokenizer::language_codes() const {
  std::vector<std::string> codes;
  for (std::size_t i = 0; i < kLanguages.size() && language_token_at(i); ++i) {
    codes.emplace_back(kLanguages[i].first);
  }
  return codes;
}

std::vector<std::int64_t> WhisperTokenizer::language_token_ids() const {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < kLanguages.size(); ++i) {
    auto id = language_token_at(i);
    if (!id) break;
    ids.push_back(*id);
  }
  return ids;
}

std::optional<std::string> WhisperTokenizer::language_of(std::int64_t id) const {
  const std::int64_t index = id - sot_ - 1;
  if (index < 0 || index >= static_cast<std::int64_t>(kLanguages.size())) return std::nullopt;
  if (!language_token_at(static_cast<std::size_t>(index))) return std::nullopt;
  return std::string(kLanguages[static_cast<std::size_t>(index)].first);
}

bool WhisperTokenizer::is_timestamp(std::int64_t id) const {
  return id >= timestamp_begin() && id < timestamp_begin() + kTimestampCount;
}

std::int64_t WhisperTokenizer::timestamp_token(double seconds) const {
  const double steps = std::round(seconds / kTimePrecision);
  if (!(steps >= 0 && steps < kTimestampCount)) {
    throw InvalidInput(fmt::format("timestamp {} s is outside Whisper's 0..30 s window", seconds));
  }
  return timestamp_begin() + static_cast<std::int64_t>(steps);
}

double WhisperTokenizer::timestamp_seconds(std::int64_t id) const {
  if (!is_timestamp(id)) throw NameError(fmt::format("token id {} is not a timestamp token", id));
  return static_cast<double>(id - timestamp_begin()) * kTimePrecision;
}

std::string WhisperTokenizer::id_to_token(std::int64_t id) const {
  if (is_timestamp(id) && !bpe_.has_id(id)) return fmt::format("<|{:.2f}|>", timestamp_seconds(id));
  return bpe_.id_to_token(id);
}

std::int64_t WhisperTokenizer::vocab_size() const {
  return std::max(bpe_.vocab_size(), timestamp_begin() + kTimestampCount);
}

}  // namespace speechlens::text
