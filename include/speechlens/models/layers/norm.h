#pragma once
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

enum class NormKind { layer_norm, rms_norm };

// LayerNorm (weight + bias) or RMSNorm (weight only), with a hook on its output.
class Norm {
 public:
  Norm(const WeightScope& weights, const HookNamer& hooks, NormKind kind, int64_t dim, double eps);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);

  NormKind kind() const { return kind_; }
  double eps() const { return eps_; }
  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }
  // The normalisation alone, without the hook (used by lenses that apply a final norm to a
  // cached residual stream).
  at::Tensor apply(const at::Tensor& x) const;

  hooks::HookPoint& hook_normalized;

 private:
  NormKind kind_;
  double eps_;
  at::Tensor weight_;
  at::Tensor bias_;
};

}  // namespace speechlens::models
