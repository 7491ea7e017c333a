#pragma once
// Character-level CTC decoding as HF's Wav2Vec2CTCTokenizer does it (wav2vec2 / HuBERT CTC
// heads): collapse runs of the same id, drop the blank (= pad token), turn the word delimiter
// ("|") into a space, join and strip. Greedy (best-path) decoding of logits is `greedy_ids`.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace speechlens::text {

struct CtcVocabOptions {
  std::string pad_token = "<pad>";  // also the CTC blank
  std::string word_delimiter_token = "|";
  std::string replace_word_delimiter_char = " ";
  std::vector<std::string> special_tokens{"<s>", "</s>", "<unk>", "<pad>"};
  bool do_lower_case = false;
  bool clean_up_tokenization_spaces = false;

  // Reads the keys HF's tokenizer_config.json / special_tokens_map.json hold (plain strings
  // or AddedToken objects); null or missing objects keep the defaults.
  static CtcVocabOptions from_json(const nlohmann::json& tokenizer_config,
                                   const nlohmann::json& special_tokens_map);
};

class CtcDecoder {
 public:
  // `vocab`: vocab.json's flat token -> id object. Throws InvalidInput for a nested
  // (multi-language) vocabulary, a non-integer id, or a pad token missing from it.
  CtcDecoder(const nlohmann::json& vocab, CtcVocabOptions options = {});

  // Text of a CTC id sequence (one id per frame). skip_special_tokens drops <s>, </s>, <unk>
  // (not the delimiter) before repeats are collapsed, as HF does. Ids outside the vocabulary
  // throw InvalidInput.
  std::string decode(const std::vector<int64_t>& frame_ids, bool skip_special_tokens = false) const;

  int64_t blank_id() const { return blank_id_; }
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  const std::string& id_to_token(int64_t id) const;
  std::optional<int64_t> token_to_id(const std::string& token) const;

 private:
  std::vector<std::string> tokens_;  // by id; empty string for an unused id
  std::unordered_map<std::string, int64_t> ids_;
  CtcVocabOptions options_;
  int64_t blank_id_ = 0;
};

// Best path per item: argmax over the vocabulary of logits [B, T, V], keeping the first
// lengths[b] frames (all when `lengths` is undefined).
std::vector<std::vector<int64_t>> greedy_ids(const at::Tensor& logits, const at::Tensor& lengths = {});

}  // namespace speechlens::text
