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
  if (options_.max_bytes && *options_.max_bytes < 0) {
    throw InvalidInput(fmt::format("max_bytes must be >= 0, got {}", *options_.max_bytes));
  }
  at::Tensor stored = options_.detach ? activation.detach() : activation;
  Extent extent;
  if (ctx) {
    extent.axes = ctx->time_axes();
    const int64_t dim = ctx->time_dim();
    if (dim >= 0 && dim < stored.dim() && stored.dim() > 0) {
      extent.lengths = ctx->valid_lengths();
      extent.mask = ctx->position_mask(stored.size(dim));
      if (extent.lengths.defined() && extent.lengths.numel() != stored.size(0)) extent.lengths = at::Tensor();
      if (extent.mask.defined() && extent.mask.size(0) != stored.size(0)) extent.mask = at::Tensor();
    }
  }
  if (options_.trim_padding && ctx) {
    for (const auto& axis : extent.axes) {
      if (axis.dim >= stored.dim()) continue;
      at::Tensor lengths = ctx->run.lengths(axis.unit);
      if (!lengths.defined() || lengths.numel() != stored.size(0) || lengths.numel() == 0) continue;
      const int64_t keep = std::min<int64_t>(lengths.max().item<int64_t>(), stored.size(axis.dim));
      stored = stored.narrow(axis.dim, 0, keep);
    }
    if (extent.mask.defined() && extent.lengths.defined() && extent.axes.front().dim < stored.dim()) {
      extent.mask = extent.mask.narrow(1, 0, stored.size(extent.axes.front().dim));
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
  extents_[name] = std::move(extent);
  bytes_ += size;
}

at::Tensor ActivationCache::lengths(const std::string& name) const {
  steps(name);  // throws for an unknown name
  auto it = extents_.find(name);
  return it == extents_.end() ? at::Tensor() : it->second.lengths;
}

at::Tensor ActivationCache::mask(const std::string& name) const {
  steps(name);
  auto it = extents_.find(name);
  return it == extents_.end() ? at::Tensor() : it->second.mask;
}

std::vector<TimeAxis> ActivationCache::time_axes(const std::string& name) const {
  steps(name);
  auto it = extents_.find(name);
  return it == extents_.end() ? std::vector<TimeAxis>{} : it->second.axes;
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
  extents_.clear();
  order_.clear();
  bytes_ = 0;
}

}  // namespace speechlens::hooks
