#pragma once
// Streaming statistics over a labelled dataset: per-class, per-neuron mean and variance
// (Chan et al.'s parallel merge of Welford accumulators, in float64) without holding the
// activations, selectivity indices from them, and linear CKA between layers or models.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/models/hooked_model.h"

namespace speechlens::analysis {

class NeuronStats {
 public:
  NeuronStats(int64_t classes, int64_t neurons);

  // activations [N, D] with labels [N], or [B, T, D] with per-item labels [B] or per-frame
  // labels [B, T]; mask [B, T] (bool) keeps only valid frames. Labels < 0 are skipped.
  void update(const at::Tensor& activations, const at::Tensor& labels, const at::Tensor& mask = {});
  // Folds another accumulator (e.g. from another worker) into this one.
  void merge(const NeuronStats& other);

  int64_t classes() const { return classes_; }
  int64_t neurons() const { return neurons_; }
  at::Tensor count() const { return count_; }       // [C] float64
  at::Tensor mean() const { return mean_; }         // [C, D]
  at::Tensor variance() const;                      // [C, D] (population)
  // Each class against all other examples pooled: mean [C, D] and variance [C, D].
  std::pair<at::Tensor, at::Tensor> rest(int64_t cls) const;
  // (mean_in - mean_out) / (|mean_in| + |mean_out|), in [-1, 1]; 0 where both are 0. [C, D]
  at::Tensor selectivity() const;
  // d' = (mean_in - mean_out) / sqrt((var_in + var_out) / 2). [C, D]
  at::Tensor dprime() const;

 private:
  int64_t classes_, neurons_;
  at::Tensor count_, mean_, m2_;
};

// Runs the model over `inputs` with a hook at `hook_name` that feeds its activation (valid
// frames only) into `stats` with per-item labels [B] or per-frame labels [B, T].
void accumulate_neuron_stats(models::HookedModel& model, const models::ModelInputs& inputs,
                             const std::string& hook_name, const at::Tensor& labels, NeuronStats& stats);

// Linear CKA between representations x [N, D1] and y [N, D2] of the same N examples.
double linear_cka(const at::Tensor& x, const at::Tensor& y);
// [A, B] linear CKA of every pair (a: [N, Da_i] each, b: [N, Db_j] each).
at::Tensor cka_matrix(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

}  // namespace speechlens::analysis
