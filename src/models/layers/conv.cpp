#include "speechlens/models/layers/conv.h"

#include <ATen/ATen.h>

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

}  // namespace speechlens::models
