#include "speechlens/models/layers/norm.h"

#include <ATen/ATen.h>

namespace speechlens::models {

Norm::Norm(const WeightScope& weights, const HookNamer& hooks, NormKind kind, int64_t dim, double eps)
    : hook_scale(hooks.point("hook_scale")),
      hook_normalized(hooks.point("hook_normalized")),
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

at::Tensor Norm::scale(const at::Tensor& x) const {
  if (kind_ == NormKind::layer_norm) {
    auto centred = x - x.mean(-1, /*keepdim=*/true);
    return (centred.pow(2).mean(-1, /*keepdim=*/true) + eps_).sqrt();
  }
  auto x32 = x.to(at::kFloat);
  return (x32.pow(2).mean(-1, /*keepdim=*/true) + eps_).sqrt().to(x.scalar_type());
}

at::Tensor Norm::apply_with_scale(const at::Tensor& x, const at::Tensor& scale, bool affine) const {
  if (kind_ == NormKind::layer_norm) {
    auto normed = (x - x.mean(-1, /*keepdim=*/true)) / scale;
    return affine ? normed * weight_ + bias_ : normed;
  }
  auto normed = (x.to(at::kFloat) / scale.to(at::kFloat)).to(x.scalar_type());
  return affine ? weight_ * normed : normed;
}

at::Tensor Norm::operator()(const at::Tensor& x) const {
  if (!hook_scale.is_active()) return hook_normalized(apply(x));
  return hook_normalized(apply_with_scale(x, hook_scale(scale(x))));
}

void Norm::visit(const TensorVisitor& fn) {
  fn(weight_);
  if (bias_.defined()) fn(bias_);
}

ChannelNorm::ChannelNorm(const WeightScope& weights, ChannelNormKind kind_, int64_t channels, double eps_)
    : kind(kind_), eps(eps_), weight(weights.take("weight", {channels})), bias(weights.take("bias", {channels})) {}

at::Tensor ChannelNorm::operator()(const at::Tensor& x) const {
  const int64_t channels = weight.size(0);
  if (kind == ChannelNormKind::per_channel) return at::group_norm(x, channels, weight, bias, eps);
  return at::layer_norm(x.transpose(1, 2), {channels}, weight, bias, eps).transpose(1, 2);
}

void ChannelNorm::visit(const TensorVisitor& fn) {
  fn(weight);
  fn(bias);
}

}  // namespace speechlens::models
