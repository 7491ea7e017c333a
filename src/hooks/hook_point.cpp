#include "speechlens/hooks/hook_point.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/hooks/run_context.h"
#include "speechlens/util/error.h"

namespace speechlens::hooks {

const char* to_string(Stack stack) {
  switch (stack) {
    case Stack::encoder: return "encoder";
    case Stack::decoder: return "decoder";
    case Stack::lm: return "lm";
    case Stack::none: break;
  }
  return "none";
}

Stack stack_from_name(const std::string& name) {
  if (name == "encoder") return Stack::encoder;
  if (name == "decoder") return Stack::decoder;
  if (name == "lm") return Stack::lm;
  if (name == "none" || name.empty()) return Stack::none;
  throw InvalidInput(fmt::format("unknown stack '{}'; stacks are 'encoder', 'decoder' and 'lm'", name));
}

const char* to_string(Direction direction) { return direction == Direction::forward ? "fwd" : "bwd"; }

// ---------------------------------------------------------------------------------------------
// RunState

void RunState::set_lengths(const std::string& unit, const at::Tensor& lengths) {
  if (!lengths.defined()) {
    valid.erase(unit);
    return;
  }
  if (lengths.dim() != 1) {
    throw InvalidInput(fmt::format("valid lengths of '{}' must be [batch], got {}", unit, c10::str(lengths.sizes())));
  }
  valid[unit] = ValidPositions{lengths.to(at::kCPU, at::kLong), at::Tensor()};
}

void RunState::set_mask(const std::string& unit, const at::Tensor& mask) {
  if (!mask.defined()) {
    valid.erase(unit);
    return;
  }
  if (mask.dim() != 2) {
    throw InvalidInput(fmt::format("the valid-position mask of '{}' must be [batch, positions], got {}", unit,
                                   c10::str(mask.sizes())));
  }
  auto m = mask.to(at::kBool);
  // A prefix layout is described by its lengths too (caches and pooling use them).
  auto counts = m.sum(-1).to(at::kCPU, at::kLong);
  auto prefix = at::arange(m.size(1), m.options().dtype(at::kLong)).unsqueeze(0) < counts.to(m.device()).unsqueeze(1);
  valid[unit] = ValidPositions{at::equal(prefix, m) ? counts : at::Tensor(), m};
}

const ValidPositions* RunState::find(const std::string& unit) const {
  if (unit.empty()) return nullptr;
  auto it = valid.find(unit);
  return it == valid.end() ? nullptr : &it->second;
}

at::Tensor RunState::lengths(const std::string& unit) const {
  const auto* v = find(unit);
  return v ? v->lengths : at::Tensor();
}

at::Tensor RunState::mask(const std::string& unit, int64_t positions) const {
  const auto* v = find(unit);
  if (!v) return {};
  if (v->mask.defined()) {
    const int64_t have = v->mask.size(1);
    if (positions <= have) return v->mask.narrow(1, have - positions, positions);
    // Positions past the mask (tokens generated after it was set) are real.
    auto extra = at::ones({v->mask.size(0), positions - have}, v->mask.options());
    return at::cat({v->mask, extra}, 1);
  }
  auto range = at::arange(positions, v->lengths.options());
  return range.unsqueeze(0) < v->lengths.unsqueeze(1);
}

// ---------------------------------------------------------------------------------------------
// HookContext

const std::string& HookContext::name() const { return point.name; }
Stack HookContext::stack() const { return point.stack; }
int64_t HookContext::layer() const { return point.layer; }
const std::vector<TimeAxis>& HookContext::time_axes() const { return point.axes; }

const std::string& HookContext::unit() const {
  static const std::string none;
  return point.axes.empty() ? none : point.axes.front().unit;
}

int64_t HookContext::time_dim() const { return point.axes.empty() ? -1 : point.axes.front().dim; }

at::Tensor HookContext::valid_lengths() const { return run.lengths(unit()); }

at::Tensor HookContext::position_mask(int64_t positions) const { return run.mask(unit(), positions); }

// ---------------------------------------------------------------------------------------------
// HookPoint

HookPoint::HookPoint(std::string name, Stack stack, int64_t layer, std::vector<TimeAxis> axes, size_t index,
                     const HookRegistry* registry)
    : shared_(std::make_shared<Shared>()) {
  shared_->name = std::move(name);
  shared_->stack = stack;
  shared_->layer = layer;
  shared_->axes = std::move(axes);
  shared_->index = index;
  shared_->registry = registry;
}

std::shared_ptr<const HookList> HookPoint::Shared::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex);
  return hooks;
}

void HookPoint::attach(std::shared_ptr<HookEntry> entry) {
  std::lock_guard<std::mutex> lock(shared_->mutex);
  auto next = std::make_shared<HookList>(*shared_->hooks);
  next->push_back(std::move(entry));
  shared_->hooks = std::move(next);
  shared_->attached.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<HookEntry> HookPoint::detach(HookId id) {
  std::lock_guard<std::mutex> lock(shared_->mutex);
  auto next = std::make_shared<HookList>(*shared_->hooks);
  for (auto it = next->begin(); it != next->end(); ++it) {
    if ((*it)->id == id) {
      auto entry = *it;
      entry->removed.store(true, std::memory_order_release);
      next->erase(it);
      shared_->hooks = std::move(next);
      shared_->attached.fetch_sub(1, std::memory_order_release);
      return entry;
    }
  }
  return nullptr;
}

std::vector<std::shared_ptr<HookEntry>> HookPoint::entries() const { return *shared_->snapshot(); }

bool HookPoint::has_forward_hooks() const {
  if (!has_hooks()) return false;
  for (const auto& e : *shared_->snapshot()) {
    if (e->direction == Direction::forward) return true;
  }
  return false;
}

bool HookPoint::has_backward_hooks() const {
  if (!has_hooks()) return false;
  for (const auto& e : *shared_->snapshot()) {
    if (e->direction == Direction::backward) return true;
  }
  return false;
}

bool HookPoint::call_active() const {
  const RunContext* ctx = RunContext::current(shared_->registry);
  return ctx && ctx->active();
}

bool HookPoint::is_active() const {
  if (has_hooks()) return true;
  const RunContext* ctx = RunContext::current(shared_->registry);
  if (!ctx || !ctx->active()) return false;
  const HookList* own = ctx->call_hooks(shared_->index);
  return (own && !own->empty()) || ctx->is_stop(shared_->index);
}

void check_replacement(const at::Tensor& original, const at::Tensor& replacement, const std::string& name,
                       const char* direction) {
  if (!replacement.defined()) {
    throw InvalidInput(fmt::format("{} hook at '{}' returned an undefined tensor", direction, name));
  }
  if (!replacement.sizes().equals(original.sizes())) {
    throw InvalidInput(fmt::format(
        "{} hook at '{}' returned a tensor of shape {} but the activation has shape {}; a hook "
        "that replaces an activation must keep its shape",
        direction, name, c10::str(replacement.sizes()), c10::str(original.sizes())));
  }
  if (replacement.device() != original.device()) {
    throw InvalidInput(fmt::format("{} hook at '{}' returned a tensor on {} but the activation is on {}",
                                   direction, name, replacement.device().str(), original.device().str()));
  }
  if (at::isComplexType(replacement.scalar_type()) || !at::isFloatingType(replacement.scalar_type())) {
    if (at::isFloatingType(original.scalar_type())) {
      throw InvalidInput(fmt::format("{} hook at '{}' returned a {} tensor for a {} activation", direction, name,
                                     c10::toString(replacement.scalar_type()),
                                     c10::toString(original.scalar_type())));
    }
  }
}

namespace {

// Calls the forward hooks of `list` in order (skipping removed ones); returns the activation.
at::Tensor call_forward(const HookList& list, at::Tensor activation, HookContext& ctx) {
  for (const auto& entry : list) {
    if (entry->direction != Direction::forward || entry->removed.load(std::memory_order_acquire)) continue;
    if (auto out = entry->fn(activation, ctx)) {
      check_replacement(activation, *out, ctx.name(), "forward");
      activation = out->to(activation.scalar_type());
    }
  }
  return activation;
}

bool any_backward(const HookList* list) {
  if (!list) return false;
  for (const auto& e : *list) {
    if (e->direction == Direction::backward) return true;
  }
  return false;
}

}  // namespace

at::Tensor HookPoint::run_hooks(at::Tensor activation) const {
  RunContext* ctx = RunContext::current(shared_->registry);
  if (ctx && ctx->stopped()) return activation;  // past the stop point: nothing else fires
  static const RunState no_state;
  const RunState& state = ctx ? ctx->state() : no_state;
  auto global = shared_->snapshot();
  const HookList* own = ctx && ctx->active() ? ctx->call_hooks(shared_->index) : nullptr;

  if (activation.requires_grad() && (any_backward(global.get()) || any_backward(own))) {
    // The closure keeps what it needs alive (the point's shared state, this call's hooks and a
    // copy of its run state), so it is safe to run backward after the model is gone. Registry
    // hooks are looked up when the gradient arrives: one removed before then is not called.
    std::shared_ptr<const Shared> point = shared_;
    std::shared_ptr<const HookList> call_list = own ? std::make_shared<HookList>(*own) : nullptr;
    std::shared_ptr<const RunState> run = ctx ? ctx->state_snapshot() : std::make_shared<RunState>();
    activation.register_hook([point, call_list, run](const at::Tensor& grad) -> at::Tensor {
      at::Tensor current = grad;
      bool replaced = false;
      auto fire = [&](const HookList& list) {
        for (const auto& entry : list) {
          if (entry->direction != Direction::backward || entry->removed.load(std::memory_order_acquire)) continue;
          HookContext hc{*point, *run, Direction::backward};
          if (auto out = entry->fn(current, hc)) {
            check_replacement(current, *out, point->name, "backward");
            current = *out;
            replaced = true;
          }
        }
      };
      fire(*point->snapshot());
      if (call_list) fire(*call_list);
      return replaced ? current : at::Tensor();
    });
  }

  HookContext hc{*shared_, state, Direction::forward};
  activation = call_forward(*global, std::move(activation), hc);
  if (own) activation = call_forward(*own, std::move(activation), hc);
  if (ctx && ctx->is_stop(shared_->index)) ctx->record_stop(activation);
  return activation;
}

}  // namespace speechlens::hooks
