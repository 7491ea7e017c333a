#pragma once
// HookedWhisper: OpenAI's Whisper (every HF checkpoint layout, tiny to large-v3), natively,
// with a hook point at every activation.
//
//   log-mel [B, n_mels, T] -> conv1 -> GELU -> conv2 (stride 2) -> GELU -> + sinusoid positions
//     -> encoder blocks (pre-norm self-attention, MLP) -> ln_post         = audio [B, T/2, D]
//   tokens [B, S] -> embed + learned positions
//     -> decoder blocks (causal self-attention, cross-attention to audio, MLP) -> ln_final
//     -> unembed (tied to the token embedding)                          = logits [B, S, vocab]
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "speechlens/audio/log_mel.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/models/hooked_model.h"
#include "speechlens/models/layers/conv.h"
#include "speechlens/models/layers/transformer_block.h"
#include "speechlens/text/whisper_tokenizer.h"

namespace speechlens::models {

// The audio encoder's shape; Qwen2-Audio's audio tower is this encoder too.
struct WhisperEncoderConfig {
  int64_t n_mels = 80;
  int64_t d_model = 384;
  int64_t layers = 4;
  int64_t heads = 6;
  int64_t ffn = 1536;
  int64_t max_source_positions = 1500;
  std::string activation = "gelu";
  // Qwen2-Audio: average-pool frames by 2 before the final norm.
  bool average_pool = false;
};

// conv1 -> GELU -> conv2 (stride 2) -> GELU -> + positions -> pre-norm blocks [-> avg pool] -> ln_post.
// Hook names (under the namer's prefix): hook_mel, conv1.hook_out, conv2.hook_out,
// hook_pos_embed, blocks.{i}.*, [hook_pooled,] ln_post.hook_normalized.
class WhisperEncoder {
 public:
  WhisperEncoder(const WeightScope& weights, const HookNamer& hooks, const WhisperEncoderConfig& config);

  // log-mel [B, n_mels, T] (already on the weights' device and dtype) -> [B, T', D].
  // key_valid [B, T/2] marks real frames for models that mask padding (Qwen2-Audio); Whisper
  // itself attends to every frame. Honours the current call's start_at (the conv front end is
  // skipped; `mel` may then be undefined when `batch` is given) and stop point (returns early).
  at::Tensor operator()(const at::Tensor& mel, const at::Tensor& key_valid = {}, int64_t batch = -1) const;
  void visit(const TensorVisitor& fn);

  const WhisperEncoderConfig& config() const { return config_; }
  const Norm& final_norm() const { return *ln_post_; }
  // The read-out of a residual stream of the blocks: [average pool,] ln_post, without hooks.
  at::Tensor apply_final_norm(const at::Tensor& residual) const;
  const std::vector<std::unique_ptr<TransformerBlock>>& blocks() const { return blocks_; }
  // Frames after the conv front end for `mel_frames` input frames.
  int64_t frames_after_convs(int64_t mel_frames) const {
    return conv2_.output_length(conv1_.output_length(mel_frames));
  }

 private:
  WhisperEncoderConfig config_;
  hooks::HookPoint* hook_mel_;
  Conv1d conv1_, conv2_;
  hooks::HookPoint* hook_conv1_out_;
  hooks::HookPoint* hook_conv2_out_;
  at::Tensor positions_;  // [max_source_positions, D]
  hooks::HookPoint* hook_pos_embed_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  hooks::HookPoint* hook_pooled_ = nullptr;
  std::unique_ptr<Norm> ln_post_;
};

// A pre-norm transformer block laid out as Whisper's checkpoints name it.
BlockConfig whisper_block_config(int64_t d_model, int64_t heads, int64_t ffn, const std::string& activation,
                                 bool cross_attention);

struct WhisperConfig {
  int64_t n_mels = 80;
  int64_t vocab_size = 51865;
  int64_t d_model = 384;
  int64_t encoder_layers = 4;
  int64_t encoder_heads = 6;
  int64_t encoder_ffn = 1536;
  int64_t decoder_layers = 4;
  int64_t decoder_heads = 6;
  int64_t decoder_ffn = 1536;
  int64_t max_source_positions = 1500;
  int64_t max_target_positions = 448;
  std::string activation = "gelu";
  int64_t decoder_start_token_id = 50257;
  int64_t eos_token_id = 50256;
  int64_t pad_token_id = 50256;

  static WhisperConfig from_json(const nlohmann::json& config);
  WhisperEncoderConfig encoder() const;
};

// What transcribe() decodes: the language (multilingual checkpoints; unset: detected per clip)
// and the task.
struct WhisperTranscribeOptions {
  std::optional<std::string> language;
  std::string task = "transcribe";  // or "translate" (multilingual checkpoints)
  int64_t max_new_tokens = 0;       // 0: up to the decoder's length
};

class HookedWhisper : public HookedModel {
 public:
  HookedWhisper(const io::Checkpoint& checkpoint, const LoadOptions& options = {});
  static std::unique_ptr<HookedWhisper> from_pretrained(const std::filesystem::path& dir,
                                                        const LoadOptions& options = {});

  std::string family() const override { return "whisper"; }
  nlohmann::json config_json() const override;
  const WhisperConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_; }
  const audio::WhisperFeatureExtractor& feature_extractor() const { return extractor_; }
  // The checkpoint's tokenizer, read on first use (only decoding text needs it; features,
  // forwards and generate do not). Throws IoError when the folder has no tokenizer files.
  const text::WhisperTokenizer& tokenizer() const;
  bool has_tokenizer() const;

  // The decoder prompt transcription starts from: <|startoftranscript|> [<|lang|> <|task|>]
  // <|notimestamps|>, from generation_config.json (no tokenizer needed), English for
  // multilingual checkpoints unless `language` says otherwise.
  std::vector<int64_t> default_prompt(std::optional<std::string> language = std::nullopt,
                                      const std::string& task = "transcribe") const;

  // log-mel [B, n_mels, T] (T <= 2 * max_source_positions; HF pads to exactly that) -> audio
  // states [B, T/2, D]. mel_lengths [B] marks valid mel frames for hooks and caches.
  at::Tensor encode(const at::Tensor& mel, const at::Tensor& mel_lengths = {}, const RunOptions& options = {});
  // tokens [B, S], audio states [B, T', D] -> logits [B, S, vocab].
  at::Tensor decode(const at::Tensor& tokens, const at::Tensor& audio, const RunOptions& options = {});

  std::vector<std::vector<int64_t>> generate(const ModelInputs& inputs, const GenerateOptions& generate = {},
                                             const RunOptions& options = {}) override;
  std::vector<std::string> transcribe(const std::vector<at::Tensor>& waves,
                                      std::optional<int64_t> sampling_rate = std::nullopt) override;
  std::vector<std::string> transcribe(const std::vector<at::Tensor>& waves, std::optional<int64_t> sampling_rate,
                                      const WhisperTranscribeOptions& options);
  // The token ids transcribe decodes (prompt and end-of-text excluded), per clip.
  std::vector<std::vector<int64_t>> transcribe_ids(const std::vector<at::Tensor>& waves,
                                                   std::optional<int64_t> sampling_rate,
                                                   const WhisperTranscribeOptions& options);
  // The most likely language token after <|startoftranscript|> (multilingual checkpoints), per
  // clip, as OpenAI's detect_language.
  std::vector<int64_t> detect_language(const at::Tensor& mel, const at::Tensor& mel_lengths = {});

  // Clips -> log-mel padded to 30 s [B, n_mels, 3000] with feature_lengths = mel frames holding
  // audio (HF's attention mask), and the default prompt as tokens.
  ModelInputs prepare(const std::vector<at::Tensor>& waves,
                      std::optional<int64_t> sampling_rate = std::nullopt) const override;

  std::vector<StackInfo> stacks() const override;
  const Norm* final_norm_layer(hooks::Stack stack) const override;
  at::Tensor unembed(hooks::Stack stack, const at::Tensor& normed) const override;
  at::Tensor unembedding(hooks::Stack stack) const override;

  const std::vector<std::unique_ptr<TransformerBlock>>& encoder_blocks() const { return encoder_->blocks(); }
  const std::vector<std::unique_ptr<TransformerBlock>>& decoder_blocks() const { return decoder_blocks_; }
  // Encoder frames produced from `mel_frames` log-mel frames.
  int64_t encoder_frames(int64_t mel_frames) const { return encoder_->frames_after_convs(mel_frames); }
  // [B] mel frame counts -> [B] encoder frame counts (conv2 halves, rounding up).
  static at::Tensor encoder_lengths(const at::Tensor& mel_lengths);

 protected:
  void visit(const TensorVisitor& fn) override;
  at::Tensor run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) override;

 private:
  class Session;
  // The encoder under the current call: lengths set, start_at honoured, or the given output.
  at::Tensor encode_in_call(const at::Tensor& mel, const at::Tensor& mel_lengths, const RunOptions& options,
                            int64_t batch, hooks::RunContext& ctx);
  at::Tensor decode_in_call(const at::Tensor& tokens, const at::Tensor& audio, std::vector<BlockCache>* cache);
  at::Tensor tokens_or_prompt(const at::Tensor& tokens, int64_t batch) const;

  WhisperConfig config_;
  GenerationConfig generation_;
  audio::WhisperFeatureExtractor extractor_;
  SideFile<text::WhisperTokenizer> tokenizer_;
  std::unique_ptr<WhisperEncoder> encoder_;
  // Decoder.
  at::Tensor token_embedding_;     // [vocab, D]
  at::Tensor decoder_positions_;   // [max_target_positions, D]
  at::Tensor unembedding_;         // [vocab, D]; the token embedding itself when tied
  hooks::HookPoint* hook_tok_embed_;
  hooks::HookPoint* hook_decoder_pos_embed_;
  std::vector<std::unique_ptr<TransformerBlock>> decoder_blocks_;
  std::unique_ptr<Norm> decoder_ln_final_;
  hooks::HookPoint* hook_logits_;
  bool tied_unembedding_ = true;
};

}  // namespace speechlens::models
