#pragma once
// Byte-level BPE tokenizer (GPT-2 family: Whisper, Qwen2) loaded from Hugging Face files, giving
// the same ids as HF's `tokenizers` for the same files.
//
// Loading: `tokenizer.json` (tokenizers' format: BPE model, ByteLevel / Split pre-tokenizer,
// optional NFC normalizer, added tokens) or, when it is absent, the "slow" file set
// vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json, tokenizer_config.json).
// Encoding never adds special tokens (no BOS/EOS template); added tokens that occur in the text
// are matched as whole tokens first, as HF does. Thread-safe: encode/decode are const and the
// word cache is guarded.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace speechlens::text {

// A token added on top of the BPE vocabulary (tokenizer.json "added_tokens").
struct AddedToken {
  std::string content;
  std::int64_t id = 0;
  bool special = false;     // dropped by decode(skip_special_tokens=true)
  bool normalized = false;  // matched in the normalised text rather than the raw text
  bool lstrip = false;      // swallows whitespace on its left
  bool rstrip = false;      // swallows whitespace on its right
  bool single_word = false; // only matches when not inside a word
};

class BpeTokenizer {
 public:
  // Loads tokenizer.json from `dir`, else vocab.json + merges.txt and their companions.
  // Throws IoError when no tokenizer files are there, InvalidInput for a malformed or
  // unsupported file (naming the file and the field).
  static BpeTokenizer from_dir(const std::filesystem::path& dir);
  // Loads one tokenizer.json file.
  static BpeTokenizer from_tokenizer_json(const std::filesystem::path& file);

  // Token ids of UTF-8 text (throws InvalidInput on malformed UTF-8).
  std::vector<std::int64_t> encode(std::string_view text) const;
  // The pieces the pre-tokenizer cuts the (normalised) text into, as UTF-8, with the added
  // tokens as their own pieces: the word boundaries BPE works within.
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  // Text of ids; bytes that do not form valid UTF-8 become U+FFFD, as in HF. Ids outside the
  // vocabulary are skipped (as HF does) unless `strict`, which throws InvalidInput instead.
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = false,
                     bool strict = false) const;

  std::optional<std::int64_t> token_to_id(std::string_view token) const;
  // The vocabulary string of an id (byte-level form, e.g. "Ġthe"); throws NameError for an id
  // outside the vocabulary.
  std::string id_to_token(std::int64_t id) const;
  bool has_id(std::int64_t id) const;
  // One more than the largest id (BPE vocabulary and added tokens together).
  std::int64_t vocab_size() const;
  bool is_special(std::int64_t id) const;
  const std::vector<AddedToken>& added_tokens() const;
  // Whether the text is NFC-normalised before pre-tokenisation (Qwen2), and the split regex.
  bool normalizes_nfc() const;
  std::string split_regex() const;

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  struct Impl;

 private:
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace speechlens::text
