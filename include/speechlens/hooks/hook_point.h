#pragma once
// A HookPoint sits at one activation of a model. With no hook attached it costs one branch;
// with hooks it hands the activation to each in order, and a hook that returns a tensor
// replaces the activation for everything downstream (patching, ablation, steering).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace speechlens::hooks {

// Which stack of the model a hook point belongs to; model-level points have none.
enum class Stack { none, encoder, decoder, lm };
const char* to_string(Stack stack);

enum class Direction { forward, backward };

// Per-forward facts that hooks may need, set by the model before it runs: which decode step
// this is, and which frames / tokens of the batch are real rather than padding.
struct RunState {
  int64_t decode_step = -1;        // -1 outside step-by-step generation
  at::Tensor encoder_valid_lengths;  // [B] int64, frames per item at the encoder's resolution
  at::Tensor decoder_valid_lengths;  // [B] int64, tokens per item (empty: all valid)
};

class HookPoint;

// What a hook sees besides the activation.
struct HookContext {
  const HookPoint& point;
  const RunState& run;
  Direction direction;

  const std::string& name() const;
  Stack stack() const;
  int64_t layer() const;  // -1 for model-level points
  int64_t decode_step() const { return run.decode_step; }
  // Valid lengths of this point's stack (empty tensor when every position is valid).
  const at::Tensor& valid_lengths() const;
  // [B, T] bool mask of valid positions for an activation with T positions along dim 1, or an
  // empty tensor when every position is valid.
  at::Tensor position_mask(int64_t positions) const;
};

// A hook: return nullopt to observe, a tensor of the same shape to replace the activation.
using HookFn = std::function<std::optional<at::Tensor>(const at::Tensor&, HookContext&)>;
using HookId = uint64_t;

class HookPoint {
 public:
  HookPoint(std::string name, Stack stack, int64_t layer, const RunState* run);
  HookPoint(const HookPoint&) = delete;
  HookPoint& operator=(const HookPoint&) = delete;

  const std::string& name() const { return name_; }
  Stack stack() const { return stack_; }
  int64_t layer() const { return layer_; }

  bool has_hooks() const { return !forward_.empty() || !backward_.empty(); }
  bool has_forward_hooks() const { return !forward_.empty(); }
  bool has_backward_hooks() const { return !backward_.empty(); }

  // The hot path: models call this at every activation.
  at::Tensor operator()(at::Tensor activation) const {
    if (!has_hooks()) [[likely]] return activation;
    return run_hooks(std::move(activation));
  }

  // Registry-internal: attach / detach by id.
  void attach(HookId id, HookFn fn, Direction direction);
  bool detach(HookId id);
  void clear();

 private:
  at::Tensor run_hooks(at::Tensor activation) const;

  std::string name_;
  Stack stack_;
  int64_t layer_;
  const RunState* run_;
  std::vector<std::pair<HookId, HookFn>> forward_;
  std::vector<std::pair<HookId, HookFn>> backward_;
};

}  // namespace speechlens::hooks
