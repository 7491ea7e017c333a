#pragma once
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

class RotaryEmbedding;

struct AttentionConfig {
  int64_t d_model = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // 0: same as n_heads; fewer for grouped-query attention
  int64_t d_head = 0;      // 0: d_model / n_heads
  bool q_bias = true;
  bool k_bias = true;
  bool v_bias = true;
  bool o_bias = true;
  // Compute softmax in float32 for half-precision activations (as HF's Qwen2 does).
  bool softmax_in_float32 = false;
  std::string q_name = "q_proj";
  std::string k_name = "k_proj";
  std::string v_name = "v_proj";
  std::string o_name = "out_proj";
  // The unit of the keys' positions when it differs from the queries' (cross-attention reads
  // "encoder" frames); empty: the hook namer's unit.
  std::string key_unit;

  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_dim() const { return d_head > 0 ? d_head : d_model / n_heads; }
};

// Which keys each query may see.
struct AttentionMask {
  bool causal = false;
  // [B, Tk] bool, true for real keys; undefined when every key is real.
  at::Tensor key_valid;
};

// Keys and values kept across decode steps. Self-attention appends the new positions; for
// cross-attention `fixed` is set once the encoder's keys/values are computed.
struct KVCache {
  at::Tensor keys;    // [B, Tk, H_kv, Dh]
  at::Tensor values;  // [B, Tk, H_kv, Dh]
  bool fixed = false;
  int64_t length() const { return keys.defined() ? keys.size(1) : 0; }
};

// Multi-head (optionally grouped-query, optionally rotary) attention with per-head hooks.
// The explicit path (matmul, mask, softmax, matmul) runs only when a hook wants the scores or
// the pattern; otherwise the fused scaled_dot_product_attention kernel runs (z, the per-head
// weighted values, is its output, so hooking z keeps the fused kernel). hook_result, the
// per-head output after the output projection (TransformerLens's use_attn_result), is computed
// only when hooked.
class Attention {
 public:
  Attention(const WeightScope& weights, const HookNamer& hooks, AttentionConfig config,
            const RotaryEmbedding* rotary = nullptr);

  // x: [B, Tq, D] queries; source: [B, Tk, D] keys/values (x itself for self-attention).
  // positions: [Tq] absolute positions, needed only with rotary embeddings.
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& source, const AttentionMask& mask,
                        KVCache* cache = nullptr, const at::Tensor& positions = {}) const;
  void visit(const TensorVisitor& fn);
  const AttentionConfig& config() const { return config_; }
  const Linear& out_proj() const { return o_; }
  bool needs_explicit_path() const;

  hooks::HookPoint& hook_q;
  hooks::HookPoint& hook_k;
  hooks::HookPoint& hook_v;
  hooks::HookPoint* hook_rot_q = nullptr;  // rotary attention only
  hooks::HookPoint* hook_rot_k = nullptr;
  hooks::HookPoint& hook_attn_scores;
  hooks::HookPoint& hook_pattern;
  hooks::HookPoint& hook_z;
  hooks::HookPoint& hook_result;  // [B, T, H, D]: z_h W_O_h (the bias is not split over heads)

 private:
  AttentionConfig config_;
  const RotaryEmbedding* rotary_;
  Linear q_, k_, v_, o_;
};

}  // namespace speechlens::models
