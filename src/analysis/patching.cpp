#include "speechlens/analysis/patching.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"

namespace speechlens::analysis {

const char* to_string(SweepAxis axis) {
  switch (axis) {
    case SweepAxis::position: return "position";
    case SweepAxis::head: return "head";
    case SweepAxis::whole: return "whole";
  }
  return "?";
}

SweepAxis sweep_axis_from_name(const std::string& name) {
  if (name == "position" || name == "pos") return SweepAxis::position;
  if (name == "head") return SweepAxis::head;
  if (name == "whole" || name == "hook" || name == "all") return SweepAxis::whole;
  throw InvalidInput(fmt::format("unknown sweep axis '{}'; use 'position', 'head' or 'whole'", name));
}

namespace {

using Clock = std::chrono::steady_clock;

int64_t batch_of(const models::ModelInputs& inputs) { return inputs.batch_size(); }

void check_pair(const models::ModelInputs& clean, const models::ModelInputs& corrupted) {
  clean.check_compatible(corrupted, "the clean and corrupted inputs");
}

// The metric of a forward, checked: one value per row.
at::Tensor evaluate(const Metric& metric, const at::Tensor& logits, int64_t rows) {
  at::Tensor values = metric(logits);
  if (!values.defined() || values.numel() != rows) {
    throw InvalidInput(fmt::format(
        "the metric must return one value per batch item ({} here) but returned {}; reduce over "
        "positions and vocabulary inside the metric, not over the batch",
        rows, values.defined() ? c10::str(values.sizes()) : std::string("nothing")));
  }
  return values.reshape({rows});
}

// A forward that records the selected hooks' activations (each must fire exactly once).
struct RecordedRun {
  at::Tensor metric;  // [B]
  std::vector<at::Tensor> activations;
};

RecordedRun record_run(models::HookedModel& model, const models::ModelInputs& inputs,
                       const std::vector<std::string>& names, const Metric& metric) {
  c10::NoGradGuard no_grad;
  hooks::ActivationCache cache;
  models::RunOptions options;
  for (const auto& name : names) options.add_hook(hooks::HookSelector::exact(name), cache.recorder());
  at::Tensor logits = model.run(inputs, options);
  RecordedRun run{evaluate(metric, logits, batch_of(inputs)).to(at::kDouble), {}};
  for (const auto& name : names) {
    if (!cache.contains(name)) {
      throw InvalidInput(fmt::format("hook '{}' did not fire in the forward; it cannot be patched", name));
    }
    const auto& steps = cache.steps(name);
    if (steps.size() != 1) {
      throw InvalidInput(fmt::format("hook '{}' fired {} times in one forward; patching needs hooks that fire once",
                                     name, steps.size()));
    }
    run.activations.push_back(steps.front());
  }
  return run;
}

struct Sweep {
  std::vector<PatchSlot> slots;               // every configuration, hook-major
  std::vector<int64_t> row_of;                // hook index per configuration
  std::vector<int64_t> column_of;             // slot index within its hook
  std::vector<std::pair<int64_t, int64_t>> widest;  // column ranges of the hook with most slots
};

Sweep plan(const std::vector<std::string>& names, const std::vector<at::Tensor>& activations,
           const PatchingOptions& options, int64_t batch) {
  if (options.window < 1) throw InvalidInput(fmt::format("window must be >= 1, got {}", options.window));
  Sweep sweep;
  for (size_t h = 0; h < names.size(); ++h) {
    const at::Tensor& act = activations[h];
    if (act.dim() == 0 || act.size(0) != batch) {
      throw InvalidInput(fmt::format("hook '{}' has shape {}, which does not lead with the batch ({}); it cannot be patched per item",
                                     names[h], c10::str(act.sizes()), batch));
    }
    std::vector<std::pair<int64_t, int64_t>> ranges;
    int64_t dim = -1;
    if (options.axis == SweepAxis::whole) {
      ranges.emplace_back(0, 0);
    } else {
      dim = options.axis == SweepAxis::position ? 1 : 2;
      // A head sweep needs the per-head layout [B, T, H, Dh]; on [B, T, D] dim 2 is d_model.
      if (act.dim() <= dim || (options.axis == SweepAxis::head && act.dim() != 4)) {
        throw InvalidInput(fmt::format(
            "a {} sweep patches along dim {}, but hook '{}' has shape {}; pick per-{} hooks (e.g. {}) or sweep 'whole'",
            to_string(options.axis), dim, names[h], c10::str(act.sizes()), to_string(options.axis),
            options.axis == SweepAxis::head ? "attn.hook_z" : "hook_resid_pre"));
      }
      int64_t first = 0, size = act.size(dim);
      if (options.axis == SweepAxis::position) {
        first = std::clamp<int64_t>(options.position_begin, 0, size);
        if (options.position_end >= 0) size = std::min(size, options.position_end);
        if (first >= size) {
          throw InvalidInput(fmt::format("position range [{}, {}) is empty for hook '{}' with {} positions",
                                         options.position_begin, options.position_end, names[h], act.size(dim)));
        }
      }
      const int64_t step = options.axis == SweepAxis::position ? options.window : 1;
      for (int64_t b = first; b < size; b += step) ranges.emplace_back(b, std::min(size, b + step));
    }
    if (ranges.size() > sweep.widest.size()) sweep.widest = ranges;
    for (size_t c = 0; c < ranges.size(); ++c) {
      sweep.slots.push_back({names[h], dim, ranges[c].first, ranges[c].second});
      sweep.row_of.push_back(static_cast<int64_t>(h));
      sweep.column_of.push_back(static_cast<int64_t>(c));
    }
  }
  return sweep;
}

PatchingResult make_result(const std::vector<std::string>& names, const Sweep& sweep, const at::Tensor& flat,
                           const PatchingOptions& options, double clean, double corrupted) {
  PatchingResult result;
  result.hook_names = names;
  result.axis = options.axis;
  result.reverse = options.reverse;
  result.clean_metric = clean;
  result.corrupted_metric = corrupted;
  at::Tensor values = flat;
  if (options.normalize) {
    const double span = clean - corrupted;
    if (span == 0.0 || !std::isfinite(span)) {
      throw InvalidInput(fmt::format(
          "normalize divides by (clean - corrupted) = {}; the two runs give the same metric, so report raw values",
          span));
    }
    values = (values - corrupted) / span;
    result.normalized = true;
  }
  const auto n_hooks = static_cast<int64_t>(names.size());
  if (options.axis == SweepAxis::whole) {
    result.values = values;
    result.axis_names = {"hook"};
    return result;
  }
  const auto columns = static_cast<int64_t>(sweep.widest.size());
  result.values = at::full({n_hooks, columns}, std::numeric_limits<double>::quiet_NaN(), at::kDouble);
  auto out = result.values.accessor<double, 2>();
  auto in = values.accessor<double, 1>();
  for (size_t i = 0; i < sweep.slots.size(); ++i) out[sweep.row_of[i]][sweep.column_of[i]] = in[i];
  result.axis_names = {"hook", to_string(options.axis)};
  result.slot_ranges = sweep.widest;
  for (auto [b, e] : sweep.widest) {
    if (options.axis == SweepAxis::head) {
      result.slot_labels.push_back(fmt::format("head {}", b));
    } else {
      result.slot_labels.push_back(e - b == 1 ? fmt::format("{}", b) : fmt::format("{}-{}", b, e - 1));
    }
  }
  return result;
}

// Reports progress through the callback, or as a log line with the rate every few seconds.
class Progress {
 public:
  Progress(const char* what, int64_t total, ProgressFn callback)
      : what_(what), total_(total), callback_(std::move(callback)), start_(Clock::now()), last_log_(start_) {}
  void update(int64_t done) {
    if (callback_) {
      callback_(done, total_);
      return;
    }
    auto now = Clock::now();
    if (now - last_log_ < std::chrono::seconds(5) && done < total_) return;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    if (done == total_ && seconds < 5) return;  // short sweeps stay quiet
    last_log_ = now;
    log::info(fmt::format("{}: {}/{} configurations ({:.1f}/s, {:.1f} s)", what_, done, total_,
                          seconds > 0 ? done / seconds : 0.0, seconds));
  }

 private:
  const char* what_;
  int64_t total_;
  ProgressFn callback_;
  Clock::time_point start_, last_log_;
};

// The source run's activations go into the target run.
struct Roles {
  const models::ModelInputs* source;
  const models::ModelInputs* target;
};

Roles roles(const models::ModelInputs& clean, const models::ModelInputs& corrupted, bool reverse) {
  return reverse ? Roles{&corrupted, &clean} : Roles{&clean, &corrupted};
}

}  // namespace

PatchingResult activation_patching(models::HookedModel& model, const models::ModelInputs& clean,
                                   const models::ModelInputs& corrupted, const hooks::HookSelector& hooks,
                                   const Metric& metric, const PatchingOptions& options) {
  check_pair(clean, corrupted);
  if (options.max_batch < 1) throw InvalidInput(fmt::format("max_batch must be >= 1, got {}", options.max_batch));
  const std::vector<std::string> names = model.hooks().resolve(hooks);
  const int64_t batch = batch_of(clean);
  const auto [source, target] = roles(clean, corrupted, options.reverse);
  RecordedRun source_run = record_run(model, *source, names, metric);
  RecordedRun target_run = record_run(model, *target, {}, metric);
  const Sweep sweep = plan(names, source_run.activations, options, batch);

  c10::NoGradGuard no_grad;
  const auto total = static_cast<int64_t>(sweep.slots.size());
  const int64_t per_forward = std::max<int64_t>(1, options.max_batch / batch);
  at::Tensor flat = at::empty({total}, at::kDouble);
  Progress progress("activation patching", total, options.progress);
  int64_t forwards = 0;
  std::map<std::string, size_t> hook_index;
  for (size_t h = 0; h < names.size(); ++h) hook_index[names[h]] = h;

  for (int64_t first = 0; first < total; first += per_forward) {
    const int64_t k = std::min(per_forward, total - first);
    // Each hook point patched in this chunk gets one hook that writes all of its row groups.
    std::map<std::string, std::vector<std::pair<int64_t, const PatchSlot*>>> by_hook;
    for (int64_t g = 0; g < k; ++g) {
      const PatchSlot& slot = sweep.slots[first + g];
      by_hook[slot.hook_name].emplace_back(g, &slot);
    }
    models::RunOptions run_options;
    for (auto& [name, groups] : by_hook) {
      const at::Tensor& patch = source_run.activations[hook_index.at(name)];
      run_options.add_hook(hooks::HookSelector::exact(name),
                [&groups, &patch, batch, k](const at::Tensor& act, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
                  if (act.size(0) != k * batch) {
                    throw InvalidInput(fmt::format("'{}' saw batch {} during a patching sweep of {} rows", ctx.name(),
                                                   act.size(0), k * batch));
                  }
                  at::Tensor out = act.clone();
                  const at::Tensor source_act = patch.to(act.device(), act.scalar_type());
                  for (const auto& [g, slot] : groups) {
                    at::Tensor rows = out.narrow(0, g * batch, batch);
                    if (slot->dim < 0) {
                      rows.copy_(source_act);
                    } else {
                      const int64_t length = slot->end - slot->begin;
                      rows.narrow(slot->dim, slot->begin, length)
                          .copy_(source_act.narrow(slot->dim, slot->begin, length));
                    }
                  }
                  return out;
                });
    }
    at::Tensor logits = model.run(target->repeat(k), run_options);
    ++forwards;
    at::Tensor values = evaluate(metric, logits, k * batch).to(at::kDouble).cpu().view({k, batch}).mean(1);
    flat.narrow(0, first, k).copy_(values);
    progress.update(first + k);
  }
  const double clean_metric = (options.reverse ? target_run : source_run).metric.mean().item<double>();
  const double corrupted_metric = (options.reverse ? source_run : target_run).metric.mean().item<double>();
  PatchingResult result = make_result(names, sweep, flat, options, clean_metric, corrupted_metric);
  result.forwards = forwards + 2;
  return result;
}

PatchingResult attribution_patching(models::HookedModel& model, const models::ModelInputs& clean,
                                    const models::ModelInputs& corrupted, const hooks::HookSelector& hooks,
                                    const Metric& metric, const PatchingOptions& options) {
  check_pair(clean, corrupted);
  const std::vector<std::string> names = model.hooks().resolve(hooks);
  const int64_t batch = batch_of(clean);
  const auto [source, target] = roles(clean, corrupted, options.reverse);
  RecordedRun source_run = record_run(model, *source, names, metric);

  // The target run with gradients: forward recorders keep its activations, backward recorders
  // the gradient of the batch-mean metric at each of them.
  hooks::ActivationCache target_acts;
  hooks::ActivationCache grads;
  at::Tensor target_metric;
  {
    c10::AutoGradMode grad_mode(true);
    models::RunOptions run_options;
    for (const auto& name : names) {
      run_options.add_hook(hooks::HookSelector::exact(name), target_acts.recorder());
      run_options.add_hook(hooks::HookSelector::exact(name), grads.recorder(), hooks::Direction::backward);
    }
    at::Tensor logits = model.run(*target, run_options);
    at::Tensor values = evaluate(metric, logits, batch);
    target_metric = values.detach().to(at::kDouble);
    if (!values.requires_grad()) {
      throw InvalidInput(
          "the metric's value carries no gradient from the logits (argmax, .item() or a detached tensor?); "
          "attribution patching needs a differentiable metric such as a logit difference or log-prob");
    }
    values.mean().backward();
  }
  const Sweep sweep = plan(names, source_run.activations, options, batch);
  const auto total = static_cast<int64_t>(sweep.slots.size());
  at::Tensor flat = at::zeros({total}, at::kDouble);
  std::map<std::string, at::Tensor> contribution;  // per hook: (source - target) * grad
  for (size_t h = 0; h < names.size(); ++h) {
    if (!grads.contains(names[h])) continue;  // the metric does not depend on this activation
    const at::Tensor& grad = grads.steps(names[h]).back();
    const at::Tensor& act = target_acts.get(names[h]);
    contribution[names[h]] = (source_run.activations[h].to(at::kDouble) - act.to(at::kDouble)) * grad.to(at::kDouble);
  }
  for (int64_t i = 0; i < total; ++i) {
    const PatchSlot& slot = sweep.slots[i];
    auto it = contribution.find(slot.hook_name);
    if (it == contribution.end()) continue;
    at::Tensor part = slot.dim < 0 ? it->second : it->second.narrow(slot.dim, slot.begin, slot.end - slot.begin);
    // The gradient is of the batch mean, so the sum over rows is already the mean effect.
    flat[i] = part.sum().cpu().item<double>();
  }
  const double target_mean = target_metric.mean().item<double>();
  flat = flat + target_mean;  // estimated patched metric = target metric + first-order change
  const double source_mean = source_run.metric.mean().item<double>();
  const double clean_metric = options.reverse ? target_mean : source_mean;
  const double corrupted_metric = options.reverse ? source_mean : target_mean;
  PatchingResult result = make_result(names, sweep, flat, options, clean_metric, corrupted_metric);
  result.forwards = 2;
  return result;
}

}  // namespace speechlens::analysis
