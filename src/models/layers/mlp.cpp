#include "speechlens/models/layers/mlp.h"

#include <ATen/ATen.h>

namespace speechlens::models {

Mlp::Mlp(const WeightScope& weights, const HookNamer& hooks, MlpConfig config)
    : hook_pre(hooks.point("hook_pre")),
      hook_pre_linear(config.gated ? &hooks.point("hook_pre_linear") : nullptr),
      hook_post(hooks.point("hook_post")),
      config_(std::move(config)),
      in_(weights.child(config_.in_name), config_.d_model, config_.d_mlp, config_.bias),
      out_(weights.child(config_.out_name), config_.d_mlp, config_.d_model, config_.bias) {
  if (config_.gated) {
    gate_ = Linear(weights.child(config_.gate_name), config_.d_model, config_.d_mlp, config_.bias);
  }
}

at::Tensor Mlp::operator()(const at::Tensor& x) const {
  if (config_.gated) {
    auto pre = hook_pre(gate_(x));
    auto linear = (*hook_pre_linear)(in_(x));
    return out_(hook_post(apply_activation(config_.activation, pre) * linear));
  }
  auto pre = hook_pre(in_(x));
  return out_(hook_post(apply_activation(config_.activation, pre)));
}

void Mlp::visit(const TensorVisitor& fn) {
  in_.visit(fn);
  if (config_.gated) gate_.visit(fn);
  out_.visit(fn);
}

}  // namespace speechlens::models
