#pragma once
// Linear probes on cached activations: ridge regression (closed form) for continuous targets
// and L2-regularised multinomial logistic regression for classes, each with a seeded held-out
// split and a shuffled-labels control trained and scored the same way.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace speechlens::analysis {

enum class ProbeKind { ridge, logistic };
ProbeKind probe_kind_from_name(const std::string& name);

struct ProbeOptions {
  double l2 = 1e-2;             // penalty on the weights (not the bias), per standardised feature
  double test_fraction = 0.25;  // held-out share of the examples
  uint64_t seed = 0;            // split and label shuffle
  int64_t max_iter = 500;       // logistic: gradient steps (accelerated, fixed step size)
  double tolerance = 1e-7;      // logistic: stop when the gradient norm falls below this
  bool control = true;          // also train on shuffled labels
};

struct ProbeResult {
  std::string metric;           // "accuracy" (logistic) or "r2" (ridge)
  double train_score = 0;
  double test_score = 0;
  double control_score = 0;     // test score of the shuffled-label probe (NaN without control)
  double chance = 0;            // logistic: the majority-class share of the test split; ridge: 0
  int64_t n_train = 0;
  int64_t n_test = 0;
  int64_t iterations = 0;
  // In the original feature space: scores = x W^T + b. W [classes or 1, D], b [classes or 1].
  at::Tensor weight;
  at::Tensor bias;
};

// x [N, D] floating, y: class ids [N] int64 for logistic, targets [N] floating for ridge.
ProbeResult train_probe(const at::Tensor& x, const at::Tensor& y, ProbeKind kind, const ProbeOptions& options = {});

// One probe per layer on the same labels and split.
std::vector<ProbeResult> probe_layers(const std::vector<at::Tensor>& per_layer, const at::Tensor& y, ProbeKind kind,
                                      const ProbeOptions& options = {});

// Mean over the valid frames of activations [B, T, D] (mask [B, T] bool, or undefined for all)
// -> [B, D]: one example per utterance.
at::Tensor pool_frames(const at::Tensor& activations, const at::Tensor& mask = {});

// Per-frame examples: activations [B, T, D] -> [n_valid, D] and frame labels [B, T] -> [n_valid].
std::pair<at::Tensor, at::Tensor> flatten_frames(const at::Tensor& activations, const at::Tensor& labels,
                                                 const at::Tensor& mask = {});

}  // namespace speechlens::analysis
