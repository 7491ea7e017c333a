#pragma once
// The Qwen2 decoder-only language model (HF Qwen2Model + lm_head), built from the shared layers:
//   embeddings [B, S, D] -> hook_embed -> blocks (pre-RMSNorm, rotary GQA self-attention with
//   q/k/v bias, SwiGLU MLP) -> ln_final (RMSNorm) -> lm_head (tied or not) = logits
// Qwen2-Audio's language model is this; the audio model writes its audio features into the
// embeddings before they enter.
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "speechlens/models/layers/rotary.h"
#include "speechlens/models/layers/transformer_block.h"

namespace speechlens::models {

// HF Qwen2Config, with transformers' defaults for keys a config.json leaves out (the released
// Qwen2-Audio configs list only a few keys of their text_config).
struct Qwen2Config {
  int64_t vocab_size = 151936;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 22016;
  int64_t layers = 32;
  int64_t heads = 32;
  int64_t kv_heads = 32;
  int64_t head_dim = 128;  // hidden_size / heads unless the config says otherwise
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 32768;
  std::string activation = "silu";
  bool tie_word_embeddings = false;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;

  // Reads an HF Qwen2 config object (text_config of a multimodal config). RoPE's theta comes
  // from rope_parameters.rope_theta (transformers 5) or rope_theta (4.x); a rope_type other
  // than "default" and sliding-window attention are refused with an error saying so.
  static Qwen2Config from_json(const nlohmann::json& config);
  BlockConfig block() const;
};

class Qwen2LanguageModel {
 public:
  // `model` is the scope of HF's Qwen2Model (embed_tokens, layers, norm); `lm_head` the scope
  // of the head (its "weight" may be absent when the config ties it to the embeddings).
  Qwen2LanguageModel(const WeightScope& model, const WeightScope& lm_head, const HookNamer& hooks,
                     const Qwen2Config& config);

  // Token embeddings [B, S, D] (no hook: the caller may overwrite some positions first).
  at::Tensor embed_tokens(const at::Tensor& ids) const;
  // Input embeddings [B, S, D] -> final-normed states [B, S, D]. positions: [S] or [B, S]
  // absolute positions (RoPE); key_valid: [B, S_total] bool over the cached and new tokens,
  // undefined when none is padding; cache: one entry per block, created on first use. Honours
  // the current call's start_at in the "lm" stack (then `embeddings` may be undefined and
  // `batch` gives the rows) and its stop point (returns the residual so far).
  at::Tensor operator()(const at::Tensor& embeddings, const at::Tensor& positions, const at::Tensor& key_valid,
                        std::vector<BlockCache>* cache = nullptr, int64_t batch = -1) const;
  at::Tensor unembed(const at::Tensor& residual) const;

  void visit(const TensorVisitor& fn);
  const Qwen2Config& config() const { return config_; }
  const Norm& final_norm() const { return *ln_final_; }
  const std::vector<std::unique_ptr<TransformerBlock>>& blocks() const { return blocks_; }
  bool tied_unembedding() const { return tied_unembedding_; }
  const at::Tensor& unembedding() const { return unembedding_; }

 private:
  Qwen2Config config_;
  std::unique_ptr<RotaryEmbedding> rotary_;
  at::Tensor token_embedding_;  // [vocab, D]
  hooks::HookPoint* hook_embed_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  std::unique_ptr<Norm> ln_final_;
  at::Tensor unembedding_;  // [vocab, D]; the token embedding itself when tied
  bool tied_unembedding_ = false;
};

}  // namespace speechlens::models
