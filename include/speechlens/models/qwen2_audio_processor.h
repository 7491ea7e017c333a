#pragma once
// Qwen2-Audio's processor in C++ (HF Qwen2AudioProcessor): the Instruct chat template, the
// Whisper log-mel of each clip (padded to 30 s, with its frame mask), the expansion of each
// <|AUDIO|> placeholder into one <|AUDIO|> token per audio frame the model will produce, the
// Qwen2 tokenizer, and padding of the token batch.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "speechlens/audio/log_mel.h"
#include "speechlens/text/bpe_tokenizer.h"

namespace speechlens::models {

// What the processor hands the model: HF's processor(text=..., audio=...) outputs.
struct Qwen2AudioBatch {
  at::Tensor input_ids;               // int64 [B, S], <|AUDIO|> expanded, padded
  at::Tensor attention_mask;          // int64 [B, S], 1 for real tokens
  at::Tensor input_features;          // float32 [clips, n_mels, frames]; undefined without audio
  at::Tensor feature_attention_mask;  // int32 [clips, frames], 1 for frames of real audio
  at::Tensor feature_lengths;         // int64 [clips]: feature_attention_mask.sum(-1)
  std::vector<int64_t> audio_token_counts;  // per clip, in order
};

enum class PaddingSide { left, right };

class Qwen2AudioProcessor {
 public:
  static constexpr const char* kAudioToken = "<|AUDIO|>";
  static constexpr const char* kAudioBosToken = "<|audio_bos|>";
  static constexpr const char* kAudioEosToken = "<|audio_eos|>";
  static constexpr const char* kDefaultSystem = "You are a helpful assistant.";

  // tokenizer.json (or vocab.json + merges.txt) and preprocessor_config.json from a checkpoint
  // folder; a missing preprocessor_config.json means Qwen2-Audio's (128 mels, 30 s).
  static Qwen2AudioProcessor from_dir(const std::filesystem::path& dir);
  Qwen2AudioProcessor(text::BpeTokenizer tokenizer, audio::WhisperFeatureExtractor features);

  // The Qwen2-Audio-Instruct chat template (HF's default for the processor) for one user turn
  // of `audio_count` clips followed by `prompt`, with the generation prompt:
  //   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
  //   Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n ... {prompt}<|im_end|>\n<|im_start|>assistant\n
  static std::string chat_prompt(std::string_view prompt, int64_t audio_count = 1,
                                 std::string_view system = kDefaultSystem);

  // Replaces the i-th <|AUDIO|> of `text` by counts[i] copies of it. Throws InvalidInput when the
  // text holds a different number of placeholders than counts.
  static std::string expand_audio_tokens(std::string_view text, const std::vector<int64_t>& counts);

  // texts [B] with <|AUDIO|> placeholders, clips (1-D float32 waveforms at the extractor's rate)
  // consumed by the placeholders in order across the batch. As HF: every clip padded (or
  // truncated) to 30 s, each placeholder expanded to qwen2_audio_token_count(valid frames), the
  // ids padded with <|endoftext|> on `padding_side` (Qwen2-Audio generates left-padded).
  Qwen2AudioBatch operator()(const std::vector<std::string>& texts, const std::vector<at::Tensor>& clips,
                             PaddingSide padding_side = PaddingSide::left) const;

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const {
    return tokenizer_.decode(ids, skip_special_tokens);
  }
  const text::BpeTokenizer& tokenizer() const { return tokenizer_; }
  const audio::WhisperFeatureExtractor& feature_extractor() const { return features_; }
  int64_t audio_token_id() const { return audio_token_id_; }
  int64_t pad_token_id() const { return pad_token_id_; }

 private:
  text::BpeTokenizer tokenizer_;
  audio::WhisperFeatureExtractor features_;
  int64_t audio_token_id_;
  int64_t pad_token_id_;
};

}  // namespace speechlens::models
