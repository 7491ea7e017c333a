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
#include <optional>
#include <vector>

#include "speechlens/io/checkpoint.h"
#include "speechlens/models/hooked_model.h"
#include "speechlens/models/layers/conv.h"
#include "speechlens/models/layers/transformer_block.h"

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
  // itself attends to every frame.
  at::Tensor operator()(const at::Tensor& mel, const at::Tensor& key_valid = {}) const;
  void visit(const TensorVisitor& fn);

  const WhisperEncoderConfig& config() const { return config_; }
  const Norm& final_norm() const { return *ln_post_; }
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
  std::vector<int64_t> suppress_tokens;
  std::vector<int64_t> begin_suppress_tokens;

  static WhisperConfig from_json(const nlohmann::json& config);
  WhisperEncoderConfig encoder() const;
};

// Greedy decoding: the prompt (start-of-transcript and forced tokens) and the rules.
struct GreedyOptions {
  std::vector<int64_t> prompt;       // empty: decoder_start_token_id alone
  int64_t max_new_tokens = 0;        // 0: up to max_target_positions
  bool apply_suppress_tokens = true;  // the config's suppress / begin_suppress token rules
  // Replace the config's lists (e.g. with generation_config.json's, where transformers 5 keeps
  // them); nullopt uses config.json's.
  std::optional<std::vector<int64_t>> suppress_tokens;
  std::optional<std::vector<int64_t>> begin_suppress_tokens;
};

class HookedWhisper : public HookedModel {
 public:
  HookedWhisper(const io::Checkpoint& checkpoint, const LoadOptions& options = {});
  static std::unique_ptr<HookedWhisper> from_pretrained(const std::filesystem::path& dir,
                                                        const LoadOptions& options = {});

  std::string family() const override { return "whisper"; }
  nlohmann::json config_json() const override;
  const WhisperConfig& config() const { return config_; }

  // log-mel [B, n_mels, T] (T <= 2 * max_source_positions; HF pads to exactly that) -> audio
  // states [B, T/2, D]. mel_lengths [B] marks valid mel frames for hooks and caches.
  at::Tensor encode(const at::Tensor& mel, const at::Tensor& mel_lengths = {});
  // tokens [B, S], audio [B, T', D] -> logits [B, S, vocab]. With `cache`, tokens continue
  // the sequence the cache holds (one entry per decoder layer, created on first use).
  at::Tensor decode(const at::Tensor& tokens, const at::Tensor& audio,
                    std::vector<BlockCache>* cache = nullptr);
  at::Tensor forward(const ModelInputs& inputs) override;

  // Greedy decoding with a KV cache; hooks fire at every step (the context's decode_step says
  // which, 0 being the prompt). Returns the generated tokens per item, without the prompt,
  // ending at (and excluding) end-of-text.
  std::vector<std::vector<int64_t>> generate_greedy(const at::Tensor& mel, const GreedyOptions& options,
                                                    const at::Tensor& mel_lengths = {});

  // The same greedy decoding from given audio states [B, T', D] (the encoder's output, or an
  // encoder lens's stand-in for it).
  std::vector<std::vector<int64_t>> generate_from_audio(const at::Tensor& audio, const GreedyOptions& options);

  // Pieces the analysis toolkit reuses (logit lens: final norm + unembedding).
  const Norm& decoder_final_norm() const { return *decoder_ln_final_; }
  const Norm& encoder_final_norm() const { return encoder_->final_norm(); }
  at::Tensor unembed(const at::Tensor& residual) const;
  const std::vector<std::unique_ptr<TransformerBlock>>& encoder_blocks() const { return encoder_->blocks(); }
  const std::vector<std::unique_ptr<TransformerBlock>>& decoder_blocks() const { return decoder_blocks_; }
  // Encoder frames produced from `mel_frames` log-mel frames.
  int64_t encoder_frames(int64_t mel_frames) const { return encoder_->frames_after_convs(mel_frames); }

 protected:
  void visit(const TensorVisitor& fn) override;

 private:
  void set_run_lengths(const at::Tensor& mel_lengths, int64_t batch);

  WhisperConfig config_;
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
