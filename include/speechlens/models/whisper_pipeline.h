#pragma once
// Speech to text with a HookedWhisper: the checkpoint's own front end, prompt, suppression
// rules and tokenizer around the model, as HF's pipeline("automatic-speech-recognition") does
// for one 30-second window:
//   wave [T] at 16 kHz -> log-mel padded to 30 s (mel lengths mark the real frames for hooks)
//   -> greedy decoding from <|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|> with
//   suppress_tokens / begin_suppress_tokens -> text.
// The pipeline borrows the model (hooks attached to it fire during transcription).
#include <filesystem>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>

#include "speechlens/audio/log_mel.h"
#include "speechlens/models/whisper.h"
#include "speechlens/text/whisper_tokenizer.h"

namespace speechlens::models {

// What generation_config.json says about the decoder prompt and the suppressed tokens
// (falling back to config.json, where older checkpoints keep them).
struct WhisperGenerationSettings {
  std::vector<int64_t> suppress_tokens;
  std::vector<int64_t> begin_suppress_tokens;

  static WhisperGenerationSettings from_checkpoint(const io::Checkpoint& checkpoint);
};

struct WhisperFeaturesBatch {
  at::Tensor mel;          // float32 [B, n_mels, frames]
  at::Tensor mel_lengths;  // int64 [B]: frames that hold audio (the rest is padding)
};

struct TranscribeOptions {
  std::optional<std::string> language;  // multilingual models: code or name; unset detects it
  std::string task = "transcribe";      // or "translate" (multilingual models)
  int64_t max_new_tokens = 0;           // 0: up to the decoder's length
};

class WhisperPipeline {
 public:
  // Reads preprocessor_config.json, the tokenizer (tokenizer.json or vocab.json + merges.txt)
  // and generation settings from `dir` for `model`, which must outlive the pipeline.
  WhisperPipeline(HookedWhisper& model, const std::filesystem::path& dir);
  WhisperPipeline(HookedWhisper& model, audio::WhisperFeatureExtractor extractor, text::WhisperTokenizer tokenizer,
                  WhisperGenerationSettings settings);

  // [T] or [B, T] mono 16 kHz -> padded log-mel and the number of real frames per clip.
  WhisperFeaturesBatch features(const at::Tensor& wave) const;
  // The decoder prompt for `options` (language detection, if needed, runs on `mel`).
  std::vector<int64_t> prompt(const at::Tensor& mel, const TranscribeOptions& options = {});
  // Generated token ids per clip (no prompt, no end-of-text).
  std::vector<std::vector<int64_t>> generate(const at::Tensor& wave, const TranscribeOptions& options = {});
  // Text per clip ([B, T]) or of the clip ([T], one entry).
  std::vector<std::string> transcribe(const at::Tensor& wave, const TranscribeOptions& options = {});

  const audio::WhisperFeatureExtractor& feature_extractor() const { return extractor_; }
  const text::WhisperTokenizer& tokenizer() const { return tokenizer_; }
  const WhisperGenerationSettings& settings() const { return settings_; }

 private:
  WhisperPipeline(HookedWhisper& model,
                  std::tuple<audio::WhisperFeatureExtractor, text::WhisperTokenizer, WhisperGenerationSettings> parts);
  int64_t detect_language(const at::Tensor& mel);

  HookedWhisper& model_;
  audio::WhisperFeatureExtractor extractor_;
  text::WhisperTokenizer tokenizer_;
  WhisperGenerationSettings settings_;
};

}  // namespace speechlens::models
