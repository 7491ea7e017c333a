#pragma once
// Whisper's tokenizer: the byte-level BPE of a Whisper checkpoint plus its special tokens
// (start of transcript, languages, tasks, timestamps) and HF's rules for the decoder prompt
// and for decoding model output into text.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "speechlens/text/bpe_tokenizer.h"

namespace speechlens::text {

class WhisperTokenizer {
 public:
  // Seconds per timestamp token, and the number of them (<|0.00|> .. <|30.00|>).
  static constexpr double kTimePrecision = 0.02;
  static constexpr std::int64_t kTimestampCount = 1501;

  // `multilingual` unset: English-only checkpoints reuse GPT-2's vocabulary, where
  // <|endoftext|> is id 50256; multilingual ones put it at 50257 (OpenAI's n_vocab >= 51865).
  static WhisperTokenizer from_dir(const std::filesystem::path& dir,
                                   std::optional<bool> multilingual = std::nullopt);
  explicit WhisperTokenizer(BpeTokenizer bpe, std::optional<bool> multilingual = std::nullopt);

  const BpeTokenizer& bpe() const { return bpe_; }
  bool multilingual() const { return multilingual_; }

  // Text ids without any prompt (HF's tokenizer(text, add_special_tokens=False)).
  std::vector<std::int64_t> encode(std::string_view text) const;
  // HF's WhisperTokenizer.decode: with skip_special_tokens a leading <|startofprev|> prompt is
  // dropped up to <|startoftranscript|> and special tokens are skipped; timestamp tokens never
  // appear in the text (HF removes "<|d.dd|>" with a regex; so does this). No
  // clean_up_tokenization: transformers 5 refuses it for BPE tokenizers.
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = true) const;

  // The decoder prompt. Multilingual: HF's prefix_tokens = <|startoftranscript|>
  // [<|lang|>] <|transcribe|>/<|translate|> [<|notimestamps|>]. English-only: language and task
  // are not part of the prompt (as in HF generate and OpenAI's whisper): <|startoftranscript|>
  // [<|notimestamps|>]; asking for another language than English or for "translate" throws.
  // `language` is a code ("de") or an English name ("german"), case-insensitive.
  std::vector<std::int64_t> sot_sequence(std::optional<std::string> language = std::nullopt,
                                         const std::string& task = "transcribe",
                                         bool timestamps = false) const;

  std::int64_t eot() const { return eot_; }
  std::int64_t sot() const { return sot_; }
  std::int64_t transcribe() const { return transcribe_; }
  std::int64_t translate() const { return translate_; }
  std::int64_t sot_prev() const { return sot_prev_; }
  std::int64_t sot_lm() const { return sot_lm_; }
  std::int64_t no_timestamps() const { return no_timestamps_; }
  std::int64_t no_speech() const { return no_speech_; }  // <|nospeech|> or <|nocaptions|>
  std::int64_t timestamp_begin() const { return no_timestamps_ + 1; }

  // Id of a special token by its text ("<|en|>"); throws NameError with near names if absent.
  std::int64_t special_token(std::string_view content) const;
  // Language token id for a code or English name; throws NameError for unknown languages.
  std::int64_t language_token(std::string_view language) const;
  // Language codes (transformers' spelling) this vocabulary has tokens for, in id order.
  std::vector<std::string> language_codes() const;
  std::vector<std::int64_t> language_token_ids() const;
  // The language code of a language token id, if it is one.
  std::optional<std::string> language_of(std::int64_t id) const;

  bool is_timestamp(std::int64_t id) const;
  std::int64_t timestamp_token(double seconds) const;  // rounds to 0.02 s; throws outside 0..30
  double timestamp_seconds(std::int64_t id) const;     // throws NameError if not a timestamp
  // Vocabulary string of an id, including timestamp ids the vocabulary file may lack.
  std::string id_to_token(std::int64_t id) const;
  // Ids a model's vocabulary spans: the BPE vocabulary, special tokens and all timestamps.
  std::int64_t vocab_size() const;

 private:
  std::optional<std::int64_t> language_token_at(std::size_t index) const;

  BpeTokenizer bpe_;
  bool multilingual_ = false;
  std::int64_t eot_ = 0, sot_ = 0, transcribe_ = 0, translate_ = 0, sot_prev_ = 0, sot_lm_ = 0,
               no_timestamps_ = 0, no_speech_ = 0;
};

}  // namespace speechlens::text
