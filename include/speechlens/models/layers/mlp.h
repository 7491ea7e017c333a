#pragma once
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

struct MlpConfig {
  int64_t d_model = 0;
  int64_t d_mlp = 0;
  Activation activation = Activation::gelu;
  bool bias = true;
  // Gated (SwiGLU-style): act(gate(x)) * up(x), then down.
  bool gated = false;
  // Checkpoint names relative to the MLP's scope.
  std::string in_name = "fc1";
  std::string out_name = "fc2";
  std::string gate_name = "gate_proj";
};

// The feed-forward block. Hooks follow TransformerLens: hook_pre before the activation (the
// gate's pre-activation when gated, with hook_pre_linear for the up projection), hook_post
// after it.
class Mlp {
 public:
  Mlp(const WeightScope& weights, const HookNamer& hooks, MlpConfig config);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);
  const MlpConfig& config() const { return config_; }
  const Linear& out_proj() const { return out_; }

  hooks::HookPoint& hook_pre;
  hooks::HookPoint* hook_pre_linear = nullptr;  // gated MLPs only
  hooks::HookPoint& hook_post;

 private:
  MlpConfig config_;
  Linear in_;
  Linear gate_;
  Linear out_;
};

}  // namespace speechlens::models
