#include "speechlens/models/layers/rotary.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/util/error.h"

namespace speechlens::models {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta) : head_dim_(head_dim) {
  auto exponents = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(head_dim);
  inv_freq_ = 1.0 / at::pow(theta, exponents);
}

at::Tensor RotaryEmbedding::apply(const at::Tensor& x, const at::Tensor& positions) const {
  if (!(positions.dim() == 1 && positions.size(0) == x.size(1)) &&
      !(positions.dim() == 2 && positions.size(0) == x.size(0) && positions.size(1) == x.size(1))) {
    throw InvalidInput(fmt::format("rotary positions must be [{}] or [{}, {}], got {}", x.size(1), x.size(0),
                                   x.size(1), c10::str(positions.sizes())));
  }
  // Angles in float32 as HF computes them, then cast to the activation dtype.
  auto freqs = positions.to(x.device(), at::kFloat).unsqueeze(-1) * inv_freq_.to(x.device());
  auto emb = at::cat({freqs, freqs}, -1);  // [T, Dh] or [B, T, Dh]
  const int64_t rows = positions.dim() == 2 ? x.size(0) : 1;
  auto cos = emb.cos().to(x.scalar_type()).view({rows, x.size(1), 1, head_dim_});
  auto sin = emb.sin().to(x.scalar_type()).view({rows, x.size(1), 1, head_dim_});
  auto halves = x.chunk(2, -1);
  auto rotated = at::cat({-halves[1], halves[0]}, -1);
  return x * cos + rotated * sin;
}

}  // namespace speechlens::models
