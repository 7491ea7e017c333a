#include "speechlens/hooks/hook_point.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

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

const std::string& HookContext::name() const { return point.name(); }
Stack HookContext::stack() const { return point.stack(); }
int64_t HookContext::layer() const { return point.layer(); }

const at::Tensor& HookContext::valid_lengths() const {
  static const at::Tensor none;
  switch (point.stack()) {
    case Stack::encoder: return run.encoder_valid_lengths;
    case Stack::decoder:
    case Stack::lm: return run.decoder_valid_lengths;
    case Stack::none: break;
  }
  return none;
}

at::Tensor HookContext::position_mask(int64_t positions) const {
  const at::Tensor& lengths = valid_lengths();
  if (!lengths.defined()) return {};
  auto range = at::arange(positions, lengths.options());
  return range.unsqueeze(0) < lengths.unsqueeze(1);
}

HookPoint::HookPoint(std::string name, Stack stack, int64_t layer, const RunState* run)
    : name_(std::move(name)), stack_(stack), layer_(layer), run_(run) {}

void HookPoint::attach(HookId id, HookFn fn, Direction direction) {
  (direction == Direction::forward ? forward_ : backward_).emplace_back(id, std::move(fn));
}

bool HookPoint::detach(HookId id) {
  for (auto* list : {&forward_, &backward_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      if (it->first == id) {
        list->erase(it);
        return true;
      }
    }
  }
  return false;
}

void HookPoint::clear() {
  forward_.clear();
  backward_.clear();
}

namespace {

void check_replacement(const at::Tensor& original, const at::Tensor& replacement,
                       const std::string& name, const char* direction) {
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
                                   direction, name, replacement.device().str(),
                                   original.device().str()));
  }
}

}  // namespace

at::Tensor HookPoint::run_hooks(at::Tensor activation) const {
  if (!backward_.empty() && activation.requires_grad()) {
    // The autograd hook consults the point's list when the gradient arrives, so a hook removed
    // before backward runs (its scope closed) is never called.
    const HookPoint* self = this;
    const RunState* run = run_;
    activation.register_hook([self, run](const at::Tensor& grad) -> at::Tensor {
      at::Tensor current = grad;
      bool replaced = false;
      for (const auto& [id, fn] : self->backward_) {
        HookContext ctx{*self, *run, Direction::backward};
        if (auto out = fn(current, ctx)) {
          check_replacement(current, *out, self->name(), "backward");
          current = *out;
          replaced = true;
        }
      }
      return replaced ? current : at::Tensor();
    });
  }
  for (const auto& [id, fn] : forward_) {
    HookContext ctx{*this, *run_, Direction::forward};
    if (auto out = fn(activation, ctx)) {
      check_replacement(activation, *out, name_, "forward");
      activation = out->to(activation.scalar_type());
    }
  }
  return activation;
}

}  // namespace speechlens::hooks
