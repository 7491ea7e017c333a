#pragma once
// A HookPoint sits at one activation of a model. With no hook attached it costs a branch; with
// hooks it hands the activation to each in order, and a hook that returns a tensor replaces the
// activation for everything downstream (patching, ablation, steering).
//
// Hooks come from two places: the model's registry (attached with HookRegistry::add, visible to
// every call until removed) and the current call (RunContext, see run_context.h: hooks passed
// with one forward, seen by that forward only, so concurrent and re-entrant calls never see
// each other's hooks).
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace speechlens::hooks {

// Which stack of the model a hook point belongs to; model-level points have none.
enum class Stack { none, encoder, decoder, lm };
const char* to_string(Stack stack);
Stack stack_from_name(const std::string& name);

enum class Direction { forward, backward };
const char* to_string(Direction direction);

// A time axis of an activation and the unit its positions count in ("mel" frames, "encoder"
// frames, "samples", "tokens", ...). The model records each unit's valid lengths per call.
struct TimeAxis {
  int64_t dim;
  std::string unit;
};

// Which positions of one unit are real rather than padding, for the current batch.
struct ValidPositions {
  at::Tensor lengths;  // [B] int64 on CPU when padding is on the right (undefined otherwise)
  at::Tensor mask;     // [B, T] bool, any padding layout (undefined: derive from lengths)
};

// Per-call facts that hooks may need, set by the model at the start of each call (never shared
// between calls): the decode step, and the valid positions of each unit.
struct RunState {
  int64_t decode_step = -1;  // -1 outside step-by-step generation
  std::map<std::string, ValidPositions> valid;

  // lengths [B] (any integer dtype, any device): positions >= lengths[b] are padding.
  void set_lengths(const std::string& unit, const at::Tensor& lengths);
  // mask [B, T] (true = real), for layouts lengths cannot describe (left padding).
  void set_mask(const std::string& unit, const at::Tensor& mask);
  void clear(const std::string& unit) { valid.erase(unit); }
  const ValidPositions* find(const std::string& unit) const;
  // [B] lengths of `unit`, undefined when unknown, all valid, or not a right-padded layout.
  at::Tensor lengths(const std::string& unit) const;
  // [B, positions] bool mask of real positions of `unit`; undefined when every position is real
  // or nothing is known. For a mask longer than `positions` (a decode step after a KV-cached
  // prefix) its last `positions` columns.
  at::Tensor mask(const std::string& unit, int64_t positions) const;
};

class HookRegistry;

// What a hook point is: its name, stack, layer and time axes.
struct PointInfo {
  std::string name;
  Stack stack = Stack::none;
  int64_t layer = -1;
  std::vector<TimeAxis> axes;
  size_t index = 0;                        // position in its registry (creation order)
  const HookRegistry* registry = nullptr;
};

// What a hook sees besides the activation.
struct HookContext {
  const PointInfo& point;
  const RunState& run;
  Direction direction;

  const std::string& name() const;
  Stack stack() const;
  int64_t layer() const;  // -1 for model-level points
  int64_t decode_step() const { return run.decode_step; }
  // The activation's time axes (dim, unit); the first is its main one.
  const std::vector<TimeAxis>& time_axes() const;
  // The main time axis's unit ("" when the activation has none) and dim (-1 then).
  const std::string& unit() const;
  int64_t time_dim() const;
  // Valid lengths [B] of the main unit (undefined when every position is valid or unknown).
  at::Tensor valid_lengths() const;
  // [B, positions] bool mask of the main unit's real positions, or undefined when all are.
  at::Tensor position_mask(int64_t positions) const;
};

// A hook: return nullopt to observe, a tensor of the same shape to replace the activation.
using HookFn = std::function<std::optional<at::Tensor>(const at::Tensor&, HookContext&)>;
using HookId = uint64_t;

// One attached hook. `removed` is set when it is detached, so a firing that already holds the
// list skips it (removing a hook from inside another hook is safe).
struct HookEntry {
  HookId id;
  HookFn fn;
  Direction direction;
  bool permanent;
  std::atomic<bool> removed{false};
  HookEntry(HookId id_, HookFn fn_, Direction direction_, bool permanent_)
      : id(id_), fn(std::move(fn_)), direction(direction_), permanent(permanent_) {}
};
using HookList = std::vector<std::shared_ptr<HookEntry>>;

class HookPoint {
 public:
  HookPoint(std::string name, Stack stack, int64_t layer, std::vector<TimeAxis> axes, size_t index,
            const HookRegistry* registry);
  HookPoint(const HookPoint&) = delete;
  HookPoint& operator=(const HookPoint&) = delete;

  const PointInfo& info() const { return *shared_; }
  const std::string& name() const { return shared_->name; }
  Stack stack() const { return shared_->stack; }
  int64_t layer() const { return shared_->layer; }
  const std::vector<TimeAxis>& time_axes() const { return shared_->axes; }
  // Position of the point in its registry (creation order).
  size_t index() const { return shared_->index; }

  // Hooks attached through the registry (the current call's own hooks are not counted).
  bool has_hooks() const { return shared_->attached.load(std::memory_order_acquire) > 0; }
  bool has_forward_hooks() const;
  bool has_backward_hooks() const;
  // Whether a forward through this point now would call anything: registry hooks, or the
  // current call's hooks / stop point here. Layers use it to pick a path (e.g. attention's
  // explicit path when its pattern is hooked).
  bool is_active() const;

  // The hot path: models call this at every activation.
  at::Tensor operator()(at::Tensor activation) const {
    if (!has_hooks() && !call_active()) [[likely]] return activation;
    return run_hooks(std::move(activation));
  }

  // Registry-internal: attach / detach.
  void attach(std::shared_ptr<HookEntry> entry);
  std::shared_ptr<HookEntry> detach(HookId id);
  std::vector<std::shared_ptr<HookEntry>> entries() const;

 private:
  // Everything a hook firing (or an autograd closure that outlives the model) needs.
  struct Shared : PointInfo {
    mutable std::mutex mutex;                    // guards `hooks` (swapped, never mutated)
    std::shared_ptr<const HookList> hooks = std::make_shared<HookList>();
    std::atomic<int> attached{0};
    std::shared_ptr<const HookList> snapshot() const;
  };
  // Whether the thread's current call has hooks or a stop point on this registry.
  bool call_active() const;
  at::Tensor run_hooks(at::Tensor activation) const;

  std::shared_ptr<Shared> shared_;
};

// A replacement returned by a hook must keep the activation's shape and device.
void check_replacement(const at::Tensor& original, const at::Tensor& replacement, const std::string& name,
                       const char* direction);

}  // namespace speechlens::hooks
