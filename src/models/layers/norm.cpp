#include "speechlens/models/layers/norm.h"

#include <ATen/ATen.h>

namespace speechlens::models {

Norm::Norm(const WeightScope& weights, const HookNamer& hooks, NormKind kind, int64_t dim, double eps)
    : hook_normalized(hooks.point("hook_normalized")),
      kind_(kind),
      eps_(eps),
      weight_(weights.take("weight", {dim})) {
  if (kind_ == NormKind::layer_norm) bias_ = weights.take("bias", {dim});
}

at::Tensor Norm::apply(const at::Tensor& x) const {
  if (kind_ == NormKind::layer_norm) {
    return at::layer_norm(x, {x.size(-1)}, weight_, bias_, eps_);
  }
  // RMSNorm as HF's Qwen2: variance in float32, scale applied in the input dtype.
  auto x32 = x.to(at::kFloat);
  auto normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return weight_ * normed.to(x.scalar_type());
}

at::Tensor Norm::operator()(const at::Tensor& x) const { return hook_normalized(apply(x)); }

void Norm::visit(const TensorVisitor& fn) {
  fn(weight_);
  if (bias_.defined()) fn(bias_);
}

}  // namespace speechlens::models
