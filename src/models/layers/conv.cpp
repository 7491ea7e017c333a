#include "speechlens/models/layers/conv.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <vector>

#include "speechlens/util/error.h"

namespace speechlens::models {

Conv1d::Conv1d(const WeightScope& weights, int64_t in_channels, int64_t out_channels, int64_t kernel,
               int64_t stride_, int64_t padding_, bool has_bias, int64_t groups_)
    : weight(weights.take("weight", {out_channels, in_channels / groups_, kernel})),
      stride(stride_),
      padding(padding_),
      groups(groups_) {
  if (has_bias) bias = weights.take("bias", {out_channels});
}

at::Tensor Conv1d::operator()(const at::Tensor& x) const {
  return at::conv1d(x, weight, bias, {stride}, {padding}, {1}, groups);
}

void Conv1d::visit(const TensorVisitor& fn) {
  fn(weight);
  if (bias.defined()) fn(bias);
}

int64_t Conv1d::output_length(int64_t length) const {
  const int64_t kernel = weight.size(2);
  return (length + 2 * padding - kernel) / stride + 1;
}

at::Tensor take_weight_norm(const WeightScope& weights, const std::string& name, at::IntArrayRef shape,
                            int64_t dim) {
  if (dim < 0 || dim >= static_cast<int64_t>(shape.size())) {
    throw InvalidInput(fmt::format("weight norm over dim {} of a {}-d weight", dim, shape.size()));
  }
  if (weights.contains(name)) return weights.take(name, shape);
  std::vector<int64_t> g_shape(shape.size(), 1);
  g_shape[dim] = shape[dim];
  const bool legacy = weights.contains(name + "_g") || weights.contains(name + "_v");
  const std::string g_name = legacy ? name + "_g" : "parametrizations." + name + ".original0";
  const std::string v_name = legacy ? name + "_v" : "parametrizations." + name + ".original1";
  auto g = weights.take(g_name, g_shape);
  auto v = weights.take(v_name, shape);
  // Folded once at load in float32; HF recomputes it every forward in the weight dtype.
  return at::_weight_norm(v.to(at::kFloat), g.to(at::kFloat), dim).to(v.scalar_type());
}

ConvPositionalEmbedding::ConvPositionalEmbedding(const WeightScope& weights, int64_t channels, int64_t kernel,
                                                 int64_t groups, Activation activation)
    : activation_(activation), drop_last_frame_(kernel % 2 == 0) {
  if (kernel <= 0 || groups <= 0 || channels % groups != 0) {
    throw InvalidInput(fmt::format("positional conv needs a positive kernel ({}) and a group count ({}) that "
                                   "divides the channels ({})",
                                   kernel, groups, channels));
  }
  const auto conv = weights.child("conv");
  conv_.weight = take_weight_norm(conv, "weight", {channels, channels / groups, kernel}, 2);
  conv_.bias = conv.take("bias", {channels});
  conv_.padding = kernel / 2;
  conv_.groups = groups;
}

at::Tensor ConvPositionalEmbedding::operator()(const at::Tensor& x) const {
  auto y = conv_(x.transpose(1, 2));
  if (drop_last_frame_) y = y.narrow(2, 0, y.size(2) - 1);
  return apply_activation(activation_, y).transpose(1, 2);
}

void ConvPositionalEmbedding::visit(const TensorVisitor& fn) { conv_.visit(fn); }

}  // namespace speechlens::models
