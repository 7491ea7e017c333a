#pragma once
// Activation patching and its gradient approximation (attribution patching) on any HookedModel.
//
// A sweep patches activations of a "source" run into a "target" run, one slice at a time:
// every position window of every selected hook (dim 1), every head (dim 2, for hook_z /
// hook_q / hook_k / hook_v), or each hook's whole activation. By default the source is the
// clean run and the target the corrupted one; `reverse` swaps them (denoising vs noising).
//
// Sweeps run batched: the target inputs are repeated k times along the batch, and one hook per
// hook point writes each row group's source slice at its own place, so k configurations cost
// one forward. `max_batch` bounds the rows (k * batch) of one forward.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/models/hooked_model.h"

namespace speechlens::analysis {

// logits [B, ...] -> [B]: one value per batch item (e.g. a logit difference at one position).
using Metric = std::function<at::Tensor(const at::Tensor& logits)>;
// Called after each forward with (configurations done, total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

enum class SweepAxis {
  position,  // windows along dim 1 ([B, T, ...] activations)
  head,      // each index along dim 2 ([B, T, H, Dh] per-head activations)
  whole,     // the whole activation of each hook
};
const char* to_string(SweepAxis axis);
SweepAxis sweep_axis_from_name(const std::string& name);

struct PatchingOptions {
  SweepAxis axis = SweepAxis::position;
  // Positions are patched in windows of this many (the last window may be shorter): 1500
  // Whisper frames in windows of 30 are 50 slots.
  int64_t window = 1;
  // Restrict a position sweep to [position_begin, position_end) (end -1: to the last position),
  // e.g. the frames that hold speech rather than Whisper's 30 s padding.
  int64_t position_begin = 0;
  int64_t position_end = -1;
  // false: clean activations into the corrupted run; true: corrupted into the clean run.
  bool reverse = false;
  // Report (patched - corrupted) / (clean - corrupted) instead of the raw metric.
  bool normalize = false;
  // Most rows (configurations x input batch) in one forward.
  int64_t max_batch = 64;
  // Progress callback; when empty a log line with the rate is written for long sweeps.
  ProgressFn progress;
};

// One slot of a sweep: a hook and the range [begin, end) along `dim` it patches (dim -1 for
// the whole activation).
struct PatchSlot {
  std::string hook_name;
  int64_t dim = -1;
  int64_t begin = 0;
  int64_t end = 0;
};

struct PatchingResult {
  // [hooks, slots] for position / head sweeps (NaN where a hook has fewer slots than the
  // widest one), [hooks] for whole-activation sweeps.
  at::Tensor values;
  std::vector<std::string> hook_names;         // rows
  std::vector<std::string> axis_names;         // e.g. {"hook", "position"}
  std::vector<std::string> slot_labels;        // columns: "0", "30-59", "head 3"
  std::vector<std::pair<int64_t, int64_t>> slot_ranges;  // [begin, end) of each column
  double clean_metric = 0;      // mean over the batch
  double corrupted_metric = 0;
  bool normalized = false;
  bool reverse = false;
  SweepAxis axis = SweepAxis::position;
  int64_t forwards = 0;          // forwards the sweep ran (batched)
};

// Runs the source and target forwards once, then the batched sweep.
PatchingResult activation_patching(models::HookedModel& model, const models::ModelInputs& clean,
                                   const models::ModelInputs& corrupted, const hooks::HookSelector& hooks,
                                   const Metric& metric, const PatchingOptions& options = {});

// First-order estimate of the same sweep: (source_act - target_act) . d metric / d act at the
// target run, summed over each slot, from one forward and one backward of the target run
// (plus one forward of the source run to cache its activations).
PatchingResult attribution_patching(models::HookedModel& model, const models::ModelInputs& clean,
                                    const models::ModelInputs& corrupted, const hooks::HookSelector& hooks,
                                    const Metric& metric, const PatchingOptions& options = {});

}  // namespace speechlens::analysis
