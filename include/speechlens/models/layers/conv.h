#pragma once
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

// A 1-D convolution over [B, C, T] in HF's weight layout [C_out, C_in / groups, K].
struct Conv1d {
  at::Tensor weight;
  at::Tensor bias;  // undefined without bias
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;

  Conv1d() = default;
  Conv1d(const WeightScope& weights, int64_t in_channels, int64_t out_channels, int64_t kernel,
         int64_t stride, int64_t padding, bool bias, int64_t groups = 1);
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);
  // Output length for an input of `length` frames.
  int64_t output_length(int64_t length) const;
};

}  // namespace speechlens::models
