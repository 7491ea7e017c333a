#include "speechlens/hooks/activation_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/util/error.h"

namespace speechlens::hooks {

HookFn ActivationCache::recorder() {
  return [this](const at::Tensor& activation, HookContext& ctx) -> std::optional<at::Tensor> {
    record(ctx.name(), activation, &ctx);
    return std::nullopt;
  };
}

void ActivationCache::record(const std::string& name, const at::Tensor& activation,
                             const HookContext* ctx) {
  at::Tensor stored = options_.detach ? activation.detach() : activation;
  if (options_.trim_padding && ctx && stored.dim() >= 2) {
    const at::Tensor& lengths = ctx->valid_lengths();
    if (lengths.defined() && lengths.numel() == stored.size(0)) {
      int64_t keep = std::min<int64_t>(lengths.max().item<int64_t>(), stored.size(1));
      stored = stored.narrow(1, 0, keep);
    }
  }
  if (options_.remove_batch_dim) {
    if (stored.dim() == 0 || stored.size(0) != 1) {
      throw InvalidInput(fmt::format("remove_batch_dim needs a batch of one, but '{}' has shape {}",
                                     name, c10::str(stored.sizes())));
    }
    stored = stored.squeeze(0);
  }
  const bool convert = (options_.device && *options_.device != stored.device()) ||
                       (options_.dtype && *options_.dtype != stored.scalar_type());
  if (convert) {
    stored = stored.to(options_.device.value_or(stored.device()),
                       options_.dtype.value_or(stored.scalar_type()));
  }
  // No defensive clone: model code never writes an activation in place after its hook point.
  const int64_t size = static_cast<int64_t>(stored.numel() * stored.element_size());
  if (options_.max_bytes && bytes_ + size > *options_.max_bytes) {
    throw InvalidInput(fmt::format(
        "activation cache is over its memory cap: '{}' needs {} bytes, {} of {} are used. Cache "
        "fewer hooks (names_filter), a smaller dtype, or raise max_bytes",
        name, size, bytes_, *options_.max_bytes));
  }
  auto [it, inserted] = entries_.try_emplace(name);
  if (inserted) order_.push_back(name);
  it->second.push_back(std::move(stored));
  bytes_ += size;
}

const at::Tensor& ActivationCache::get(const std::string& name) const {
  const auto& all = steps(name);
  if (all.size() != 1) {
    throw InvalidInput(fmt::format(
        "'{}' was recorded {} times (once per decode step); read it with steps(name)", name,
        all.size()));
  }
  return all.front();
}

const std::vector<at::Tensor>& ActivationCache::steps(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::string known;
    for (size_t i = 0; i < order_.size() && i < 8; ++i) known += "\n  " + order_[i];
    throw NameError(fmt::format("'{}' is not in the cache ({} entries){}{}", name, order_.size(),
                                known, order_.size() > 8 ? "\n  ..." : ""));
  }
  return it->second;
}

std::vector<std::string> ActivationCache::names() const { return order_; }

void ActivationCache::clear() {
  entries_.clear();
  order_.clear();
  bytes_ = 0;
}

}  // namespace speechlens::hooks
