#include "speechlens/models/layers/transformer_block.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/hooks/run_context.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

WeightScope mlp_scope(const WeightScope& weights, const BlockConfig& config) {
  return config.mlp_name.empty() ? weights : weights.child(config.mlp_name);
}

// Cross-attention's keys are the encoder's frames.
AttentionConfig cross_config(const BlockConfig& config) {
  AttentionConfig cross = config.attention;
  cross.key_unit = "encoder";
  return cross;
}

}  // namespace

TransformerBlock::TransformerBlock(const WeightScope& weights, const HookNamer& hooks,
                                   const BlockConfig& config, const RotaryEmbedding* rotary)
    : config_(config),
      hook_resid_pre(hooks.point("hook_resid_pre")),
      ln1_(weights.child(config.ln1_name), hooks.child("ln1"), config.norm, config.attention.d_model,
           config.norm_eps),
      attn_(weights.child(config.self_attn_name), hooks.child("attn"), config.attention, rotary),
      hook_attn_out(hooks.point("hook_attn_out")),
      hook_resid_mid(hooks.point("hook_resid_mid")),
      ln_cross_(config.cross_attention
                    ? std::make_unique<Norm>(weights.child(config.ln_cross_name), hooks.child("ln_cross"),
                                             config.norm, config.attention.d_model, config.norm_eps)
                    : nullptr),
      cross_attn_(config.cross_attention
                      ? std::make_unique<Attention>(weights.child(config.cross_attn_name),
                                                    hooks.child("cross_attn"), cross_config(config))
                      : nullptr),
      hook_cross_attn_out(config.cross_attention ? &hooks.point("hook_cross_attn_out") : nullptr),
      hook_resid_cross(config.cross_attention ? &hooks.point("hook_resid_cross") : nullptr),
      ln2_(weights.child(config.ln2_name), hooks.child("ln2"), config.norm, config.attention.d_model,
           config.norm_eps),
      mlp_(mlp_scope(weights, config), hooks.child("mlp"), config.mlp),
      hook_mlp_out(hooks.point("hook_mlp_out")),
      hook_resid_post(hooks.point("hook_resid_post")) {}

bool call_stopped(const hooks::HookRegistry& registry) {
  const auto* ctx = hooks::RunContext::current(&registry);
  return ctx && ctx->stopped();
}

bool TransformerBlock::stop_requested() const { return call_stopped(*hook_resid_pre.info().registry); }

at::Tensor TransformerBlock::operator()(const at::Tensor& x, const Inputs& in) const {
  KVCache* self_cache = in.cache ? &in.cache->self : nullptr;
  auto resid_pre = hook_resid_pre(x);

  if (!config_.pre_norm) {
    // Post-norm: the norms sit on the residual stream itself.
    auto attn_out = hook_attn_out(attn_(resid_pre, resid_pre, in.self_mask, self_cache, in.positions));
    auto resid_mid = ln1_(hook_resid_mid(resid_pre + attn_out));
    if (stop_requested()) return resid_mid;
    auto mlp_out = hook_mlp_out(mlp_(resid_mid));
    return hook_resid_post(ln2_(resid_mid + mlp_out));
  }

  auto normed = ln1_(resid_pre);
  auto attn_out = hook_attn_out(attn_(normed, normed, in.self_mask, self_cache, in.positions));
  auto resid = hook_resid_mid(resid_pre + attn_out);
  if (stop_requested()) return resid;
  if (cross_attn_) {
    KVCache* cross_cache = in.cache ? &in.cache->cross : nullptr;
    auto cross_out = (*hook_cross_attn_out)(
        (*cross_attn_)((*ln_cross_)(resid), *in.cross_source, in.cross_mask, cross_cache));
    if (cross_cache) cross_cache->fixed = true;
    resid = (*hook_resid_cross)(resid + cross_out);
  }
  auto mlp_out = hook_mlp_out(mlp_(ln2_(resid)));
  return hook_resid_post(resid + mlp_out);
}

void TransformerBlock::visit(const TensorVisitor& fn) {
  ln1_.visit(fn);
  attn_.visit(fn);
  if (ln_cross_) ln_cross_->visit(fn);
  if (cross_attn_) cross_attn_->visit(fn);
  ln2_.visit(fn);
  mlp_.visit(fn);
}

}  // namespace speechlens::models

namespace speechlens::models {

StackStart stack_start(const hooks::HookRegistry& registry, hooks::Stack stack, const Blocks& blocks, int64_t batch,
                       const at::Device& device, at::ScalarType dtype) {
  const auto* ctx = hooks::RunContext::current(&registry);
  const hooks::StartPoint* start = ctx ? ctx->start_in(stack) : nullptr;
  if (!start) return {};
  const auto n = static_cast<int64_t>(blocks.size());
  if (start->block < 0 || start->block >= n) {
    throw InvalidInput(fmt::format("start_at '{}' names block {} of a stack with {} blocks", start->hook_name,
                                   start->block, n));
  }
  const at::Tensor& value = start->value;
  if (value.dim() != 3 || value.size(0) != batch) {
    throw InvalidInput(fmt::format("start_at '{}' needs the residual stream [batch={}, positions, d_model], got {}",
                                   start->hook_name, batch, c10::str(value.sizes())));
  }
  at::Tensor x = value.to(device, dtype);
  if (!start->after_block) return {start->block, x};
  // Resuming after a block: its resid_post hooks see the given value, then the next block runs.
  return {start->block + 1, blocks[start->block]->hook_resid_post(x)};
}

at::Tensor run_blocks(const Blocks& blocks, at::Tensor x, int64_t first, TransformerBlock::Inputs inputs,
                      std::vector<BlockCache>* cache) {
  if (cache && cache->size() < blocks.size()) cache->resize(blocks.size());
  for (size_t i = static_cast<size_t>(first); i < blocks.size(); ++i) {
    if (blocks[i]->stop_requested()) break;
    inputs.cache = cache ? &(*cache)[i] : nullptr;
    x = (*blocks[i])(x, inputs);
  }
  return x;
}

}  // namespace speechlens::models
