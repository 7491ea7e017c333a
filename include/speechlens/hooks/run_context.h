#pragma once
// One model call's own state: its valid lengths and decode step (RunState), the hooks passed
// with this call only, where it stops (stop_at) and where it resumes (start_at).
//
// A model creates a RunContext at each public entry point and activates it on the calling
// thread with a RunGuard; hook points read the innermost active context of their registry.
// So two threads calling one model, or a model call made from inside a hook, each have their
// own context, and nothing a call sets outlives it.
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "speechlens/hooks/hook_point.h"

namespace speechlens::hooks {

class HookRegistry;
class HookSelector;

// Where a call resumes: the activation of a block's residual stream (resid_pre or resid_post of
// `block` in `stack`); everything before it is skipped.
struct StartPoint {
  std::string hook_name;
  Stack stack = Stack::none;
  int64_t block = -1;
  bool after_block = false;  // resid_post: resume after `block`
  at::Tensor value;
};

class RunContext {
 public:
  explicit RunContext(const HookRegistry& registry);
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  const HookRegistry& registry() const { return *registry_; }
  RunState& state() { return *state_; }
  const RunState& state() const { return *state_; }

  // Hooks for this call only, at every point the selector matches.
  void add_hook(const HookSelector& selector, HookFn fn, Direction direction = Direction::forward);
  // The call ends right after `hook_name` fires; the model returns that activation.
  void set_stop(const std::string& hook_name);
  // The call resumes at a block's resid_pre / resid_post with `value` (see StartPoint).
  void set_start(const std::string& hook_name, at::Tensor value);

  bool stopped() const { return stopped_; }
  const at::Tensor& stop_value() const { return stop_value_; }
  bool has_stop() const { return stop_index_ >= 0; }
  const std::optional<StartPoint>& start() const { return start_; }
  // The start point when it lies in `stack` (consumed by that stack's forward), else nullptr.
  const StartPoint* start_in(Stack stack) const;
  // Whether the call has its own hooks or a stop point (hook points then look it up).
  bool active() const { return active_; }
  bool has_backward_hooks() const { return has_backward_; }

  // HookPoint-internal.
  const HookList* call_hooks(size_t point_index) const;
  bool is_stop(size_t point_index) const { return static_cast<int64_t>(point_index) == stop_index_; }
  void record_stop(const at::Tensor& value);
  std::shared_ptr<const RunState> state_snapshot() const { return std::make_shared<RunState>(*state_); }

  // The innermost context activated on this thread for `registry` (nullptr when none).
  static RunContext* current(const HookRegistry* registry);
  // The innermost context activated on this thread, whatever its registry.
  static RunContext* current();

 private:
  friend class RunGuard;
  const HookRegistry* registry_;
  std::shared_ptr<RunState> state_ = std::make_shared<RunState>();
  std::vector<HookList> call_hooks_;  // by point index; empty until the first call hook
  int64_t stop_index_ = -1;
  bool stopped_ = false;
  at::Tensor stop_value_;
  std::optional<StartPoint> start_;
  bool active_ = false;
  bool has_backward_ = false;
  RunContext* outer_ = nullptr;  // the context this one shadows on its thread
};

// Activates a context on this thread for its lifetime (restores the previous one after).
class RunGuard {
 public:
  explicit RunGuard(RunContext& context);
  ~RunGuard();
  RunGuard(const RunGuard&) = delete;
  RunGuard& operator=(const RunGuard&) = delete;

 private:
  RunContext* context_;
};

}  // namespace speechlens::hooks
