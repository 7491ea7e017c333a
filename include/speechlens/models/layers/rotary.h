#pragma once
#include <ATen/core/Tensor.h>

namespace speechlens::models {

// Rotary position embedding (rotate-half convention of HF's Llama/Qwen2), applied to
// [B, T, H, Dh] queries or keys at the given absolute positions [T].
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
