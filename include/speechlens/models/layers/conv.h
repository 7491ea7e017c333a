#pragma once
#include <string>

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

// A weight stored weight-normalised, w = g * v / ||v|| with the norm over every dim but `dim`,
// in either checkpoint spelling: `<name>_g` / `<name>_v` (torch.nn.utils.weight_norm) or
// `parametrizations.<name>.original0` / `original1` (torch.nn.utils.parametrizations.weight_norm);
// a plain `<name>` (already folded) is taken as is. Returns w of `shape`, in v's dtype.
at::Tensor take_weight_norm(const WeightScope& weights, const std::string& name, at::IntArrayRef shape,
                            int64_t dim);

// The convolutional relative position embedding of the wav2vec2 family (wav2vec2, HuBERT,
// data2vec-audio, WavLM): a grouped, weight-normalised (over dim 2) convolution with "same"
// padding, whose surplus last frame is dropped for an even kernel, then an activation.
// Checkpoint names under its scope: `conv.weight` (weight-normalised, see above), `conv.bias`.
class ConvPositionalEmbedding {
 public:
  ConvPositionalEmbedding() = default;
  ConvPositionalEmbedding(const WeightScope& weights, int64_t channels, int64_t kernel, int64_t groups,
                          Activation activation);
  // x: [B, T, D] -> the position embedding [B, T, D] (to be added to x by the caller).
  at::Tensor operator()(const at::Tensor& x) const;
  void visit(const TensorVisitor& fn);

 private:
  Conv1d conv_;
  Activation activation_ = Activation::gelu;
  bool drop_last_frame_ = false;
};

}  // namespace speechlens::models
