#pragma once
#include <ATen/core/Tensor.h>

namespace speechlens::models {

// Rotary position embedding (rotate-half convention of HF's Llama/Qwen2), applied to
// [B, T, H, Dh] queries or keys at the given absolute positions: [T] shared by the batch, or
// [B, T] per item (left-padded batches, where each item's positions start at its first token).
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta);
  at::Tensor apply(const at::Tensor& x, const at::Tensor& positions) const;
  int64_t head_dim() const { return head_dim_; }

 private:
  int64_t head_dim_;
  at::Tensor inv_freq_;  // [Dh / 2] float32
};

}  // namespace speechlens::models
