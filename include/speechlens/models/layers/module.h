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

// Creates hook points under a prefix, remembering the stack and layer they belong to.
class HookNamer {
 public:
  HookNamer(hooks::HookRegistry& registry, std::string prefix, hooks::Stack stack = hooks::Stack::none,
            int64_t layer = -1)
      : registry_(&registry), prefix_(std::move(prefix)), stack_(stack), layer_(layer) {}

  hooks::HookPoint& point(const std::string& name) const {
    return registry_->create(join(prefix_, name), stack_, layer_);
  }
  HookNamer child(const std::string& name) const { return {*registry_, join(prefix_, name), stack_, layer_}; }
  HookNamer layer(const std::string& name, int64_t index) const {
    return {*registry_, join(prefix_, name + "." + std::to_string(index)), stack_, index};
  }
  HookNamer stack(const std::string& name, hooks::Stack stack) const {
    return {*registry_, join(prefix_, name), stack, -1};
  }
  hooks::HookRegistry& registry() const { return *registry_; }

 private:
  hooks::HookRegistry* registry_;
  std::string prefix_;
  hooks::Stack stack_;
  int64_t layer_;
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
