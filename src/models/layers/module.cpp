#include "speechlens/models/layers/module.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/util/error.h"

namespace speechlens::models {

std::string join(const std::string& scope, const std::string& name) {
  if (scope.empty()) return name;
  if (name.empty()) return scope;
  return scope + "." + name;
}

Linear::Linear(const WeightScope& weights, int64_t in_features, int64_t out_features, bool has_bias)
    : weight(weights.take("weight", {out_features, in_features})) {
  if (has_bias) bias = weights.take("bias", {out_features});
}

at::Tensor Linear::operator()(const at::Tensor& x) const { return at::linear(x, weight, bias); }

void Linear::visit(const TensorVisitor& fn) {
  fn(weight);
  if (bias.defined()) fn(bias);
}

Activation activation_from_name(const std::string& name) {
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    return Activation::gelu_tanh;
  }
  if (name == "relu") return Activation::relu;
  if (name == "silu" || name == "swish") return Activation::silu;
  throw InvalidInput(fmt::format(
      "unsupported activation function '{}' (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, "
      "silu)",
      name));
}

at::Tensor apply_activation(Activation activation, const at::Tensor& x) {
  switch (activation) {
    case Activation::gelu: return at::gelu(x);
    case Activation::gelu_tanh: return at::gelu(x, "tanh");
    case Activation::relu: return at::relu(x);
    case Activation::silu: return at::silu(x);
  }
  return x;
}

}  // namespace speechlens::models
