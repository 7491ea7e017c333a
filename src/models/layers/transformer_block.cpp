#include "speechlens/models/layers/transformer_block.h"

#include <ATen/ATen.h>

namespace speechlens::models {

namespace {

WeightScope mlp_scope(const WeightScope& weights, const BlockConfig& config) {
  return config.mlp_name.empty() ? weights : weights.child(config.mlp_name);
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
                                                    hooks.child("cross_attn"), config.attention)
                      : nullptr),
      hook_cross_attn_out(config.cross_attention ? &hooks.point("hook_cross_attn_out") : nullptr),
      hook_resid_cross(config.cross_attention ? &hooks.point("hook_resid_cross") : nullptr),
      ln2_(weights.child(config.ln2_name), hooks.child("ln2"), config.norm, config.attention.d_model,
           config.norm_eps),
      mlp_(mlp_scope(weights, config), hooks.child("mlp"), config.mlp),
      hook_mlp_out(hooks.point("hook_mlp_out")),
      hook_resid_post(hooks.point("hook_resid_post")) {}

at::Tensor TransformerBlock::operator()(const at::Tensor& x, const Inputs& in) const {
  KVCache* self_cache = in.cache ? &in.cache->self : nullptr;
  auto resid_pre = hook_resid_pre(x);

  if (!config_.pre_norm) {
    // Post-norm: the norms sit on the residual stream itself.
    auto attn_out = hook_attn_out(attn_(resid_pre, resid_pre, in.self_mask, self_cache, in.positions));
    auto resid_mid = ln1_(hook_resid_mid(resid_pre + attn_out));
    auto mlp_out = hook_mlp_out(mlp_(resid_mid));
    return hook_resid_post(ln2_(resid_mid + mlp_out));
  }

  auto normed = ln1_(resid_pre);
  auto attn_out = hook_attn_out(attn_(normed, normed, in.self_mask, self_cache, in.positions));
  auto resid = hook_resid_mid(resid_pre + attn_out);
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
