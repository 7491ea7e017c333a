#pragma once
// What every layer shares: how it names its hook points, how its tensors are visited (for
// .to(device, dtype)), and the Linear / Embedding primitives built from HF weights.
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/io/checkpoint.h"

namespace speechlens::models {

using TensorVisitor = std::function<void(at::Tensor&)>;

// Joins name paths: join("model.encoder", "conv1") == "model.encoder.conv1".
std::string join(const std::string& scope, const std::string& name);

// Creates hook points under a prefix, remembering the stack, the layer and the unit of the
// positions along dim 1 of [B, T, ...] activations ("encoder" frames, "decoder" / "lm" tokens,
// by default the stack's name).
class HookNamer {
 public:
  HookNamer(hooks::HookRegistry& registry, std::string prefix, hooks::Stack stack = hooks::Stack::none,
            int64_t layer = -1, std::optional<std::string> unit = std::nullopt)
      : registry_(&registry),
        prefix_(std::move(prefix)),
        stack_(stack),
        layer_(layer),
        unit_(unit ? std::move(*unit) : hooks::HookRegistry::default_unit(stack)) {}

  // A point whose activation has its positions along dim 1 (none when the namer has no unit).
  hooks::HookPoint& point(const std::string& name) const {
    std::vector<hooks::TimeAxis> axes;
    if (!unit_.empty()) axes.push_back({1, unit_});
    return registry_->create(join(prefix_, name), stack_, layer_, std::move(axes));
  }
  // A point with explicit time axes (channels-first convolutions, attention patterns).
  hooks::HookPoint& point(const std::string& name, std::vector<hooks::TimeAxis> axes) const {
    return registry_->create(join(prefix_, name), stack_, layer_, std::move(axes));
  }
  HookNamer child(const std::string& name) const { return {*registry_, join(prefix_, name), stack_, layer_, unit_}; }
  HookNamer layer(const std::string& name, int64_t index) const {
    return {*registry_, join(prefix_, name + "." + std::to_string(index)), stack_, index, unit_};
  }
  HookNamer stack(const std::string& name, hooks::Stack stack) const {
    return {*registry_, join(prefix_, name), stack, -1};
  }
  // The same prefix with positions counted in another unit.
  HookNamer with_unit(std::string unit) const { return {*registry_, prefix_, stack_, layer_, std::move(unit)}; }
  hooks::HookRegistry& registry() const { return *registry_; }
  const std::string& unit() const { return unit_; }
  const std::string& prefix() const { return prefix_; }

 private:
  hooks::HookRegistry* registry_;
  std::string prefix_;
  hooks::Stack stack_;
  int64_t layer_;
  std::string unit_;
};

// Where a layer's weights live in the checkpoint.
struct WeightScope {
  io::WeightLoader& loader;
  std::string prefix;

  WeightScope child(const std::string& name) const { return {loader, join(prefix, name)}; }
  at::Tensor take(const std::string& name, at::IntArrayRef shape) const {
    return loader.take(join(prefix, name), shape);
  }
  std::optional<at::Tensor> take_optional(const std::string& name, at::IntArrayRef shape) const {
    return loader.take_optional(join(prefix, name), shape);
  }
  bool contains(const std::string& name) const { return loader.contains(join(prefix, name)); }
};

// y = x W^T + b, weights in HF's [out, in] layout.
struct Linear {
  at::Tensor weight;
  at::Tensor bias;  // undefined when the layer has none

  Linear() = default;
  Linear(const WeightScope& weights, int64_t in_features, int64_t out_features, bool bias);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);
};

// Elementwise activation functions by their HF config names.
enum class Activation { gelu, gelu_tanh, relu, silu };
Activation activation_from_name(const std::string& hf_name);
at::Tensor apply_activation(Activation activation, const at::Tensor& x);

}  // namespace speechlens::models
