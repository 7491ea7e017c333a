#pragma once
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

enum class NormKind { layer_norm, rms_norm };

// LayerNorm (weight + bias) or RMSNorm (weight only). Hooks as TransformerLens's norms:
// hook_scale [.., 1] (LayerNorm: sqrt(var + eps) of the centred input; RMSNorm: sqrt(mean(x^2)
// + eps)), then hook_normalized on the output. A hook on hook_scale may replace the scale
// (e.g. freeze it to a cached value, which makes the norm linear).
class Norm {
 public:
  Norm(const WeightScope& weights, const HookNamer& hooks, NormKind kind, int64_t dim, double eps);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);

  NormKind kind() const { return kind_; }
  double eps() const { return eps_; }
  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }
  // The normalisation alone, without the hooks (used by lenses that apply a final norm to a
  // cached residual stream).
  at::Tensor apply(const at::Tensor& x) const;
  // The scale the norm divides by for `x` ([.., 1], float as x), without hooks.
  at::Tensor scale(const at::Tensor& x) const;
  // The norm with a given scale (TransformerLens's apply_ln_to_stack divides by a cached one):
  // LayerNorm: (x - mean(x)) / scale * w + b; RMSNorm: x / scale * w. Linear in x.
  at::Tensor apply_with_scale(const at::Tensor& x, const at::Tensor& scale, bool affine = true) const;

  hooks::HookPoint& hook_scale;
  hooks::HookPoint& hook_normalized;

 private:
  NormKind kind_;
  double eps_;
  at::Tensor weight_;
  at::Tensor bias_;
};

// How a convolutional front end normalises its [B, C, T] output (wav2vec2-family feature
// encoders): `per_channel` normalises each channel over time (GroupNorm with one group per
// channel), `across_channels` each frame over the channels (LayerNorm on the channel axis).
enum class ChannelNormKind { per_channel, across_channels };

// An affine normalisation of [B, C, T] activations; checkpoint names `weight` and `bias` [C].
// No hook of its own: the conv layer that owns it hooks its output.
struct ChannelNorm {
  ChannelNormKind kind = ChannelNormKind::per_channel;
  double eps = 1e-5;
  at::Tensor weight;
  at::Tensor bias;

  ChannelNorm() = default;
  ChannelNorm(const WeightScope& weights, ChannelNormKind kind, int64_t channels, double eps = 1e-5);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);
};

}  // namespace speechlens::models
