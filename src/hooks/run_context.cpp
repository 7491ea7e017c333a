#include "speechlens/hooks/run_context.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/util/error.h"

namespace speechlens::hooks {

namespace {
// The innermost active context of this thread; each links to the one it shadows.
thread_local RunContext* t_innermost = nullptr;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

RunContext::RunContext(const HookRegistry& registry) : registry_(&registry) {}

RunContext* RunContext::current() { return t_innermost; }

RunContext* RunContext::current(const HookRegistry* registry) {
  for (RunContext* c = t_innermost; c; c = c->outer_) {
    if (c->registry_ == registry) return c;
  }
  return nullptr;
}

void RunContext::add_hook(const HookSelector& selector, HookFn fn, Direction direction) {
  if (!fn) throw InvalidInput("a hook must be callable");
  auto names = registry_->resolve(selector);
  if (call_hooks_.empty()) call_hooks_.resize(registry_->size() + 16);
  auto entry = std::make_shared<HookEntry>(0, std::move(fn), direction, false);
  for (const auto& name : names) {
    const size_t index = registry_->at(name).index();
    if (index >= call_hooks_.size()) call_hooks_.resize(index + 16);
    call_hooks_[index].push_back(entry);
  }
  active_ = true;
  if (direction == Direction::backward) has_backward_ = true;
}

const HookList* RunContext::call_hooks(size_t point_index) const {
  if (point_index >= call_hooks_.size()) return nullptr;
  const HookList& list = call_hooks_[point_index];
  return list.empty() ? nullptr : &list;
}

void RunContext::set_stop(const std::string& hook_name) {
  if (!registry_->contains(hook_name)) registry_->resolve(HookSelector::exact(hook_name));  // throws with suggestions
  stop_index_ = static_cast<int64_t>(registry_->at(hook_name).index());
  active_ = true;
}

void RunContext::record_stop(const at::Tensor& value) {
  if (stopped_) return;
  stop_value_ = value;
  stopped_ = true;
}

void RunContext::set_start(const std::string& hook_name, at::Tensor value) {
  if (!registry_->contains(hook_name)) registry_->resolve(HookSelector::exact(hook_name));  // throws with suggestions
  const HookPoint& point = registry_->at(hook_name);
  const bool pre = ends_with(hook_name, ".hook_resid_pre");
  const bool post = ends_with(hook_name, ".hook_resid_post");
  if (point.layer() < 0 || point.stack() == Stack::none || !(pre || post)) {
    throw InvalidInput(fmt::format(
        "start_at resumes a forward at a block's residual stream ('<stack>.blocks.<i>.hook_resid_pre' or "
        "'.hook_resid_post'); '{}' is not one",
        hook_name));
  }
  if (!value.defined()) throw InvalidInput(fmt::format("start_at '{}' needs the activation to resume from", hook_name));
  start_ = StartPoint{hook_name, point.stack(), point.layer(), post, std::move(value)};
}

const StartPoint* RunContext::start_in(Stack stack) const {
  return start_ && start_->stack == stack ? &*start_ : nullptr;
}

RunGuard::RunGuard(RunContext& context) : context_(&context) {
  context.outer_ = t_innermost;
  t_innermost = &context;
}

RunGuard::~RunGuard() {
  // Guards nest (each call's frame), so the innermost is the one ending.
  t_innermost = context_->outer_;
  context_->outer_ = nullptr;
}

}  // namespace speechlens::hooks
