#include "speechlens/models/layers/attention.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "speechlens/models/layers/rotary.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

std::string key_unit(const HookNamer& hooks, const AttentionConfig& config) {
  return config.key_unit.empty() ? hooks.unit() : config.key_unit;
}

std::vector<hooks::TimeAxis> pattern_axes(const HookNamer& hooks, const AttentionConfig& config) {
  if (hooks.unit().empty()) return {};
  return {{2, hooks.unit()}, {3, key_unit(hooks, config)}};
}

std::vector<hooks::TimeAxis> key_axes(const HookNamer& hooks, const AttentionConfig& config) {
  if (hooks.unit().empty()) return {};
  return {{1, key_unit(hooks, config)}};
}

}  // namespace

Attention::Attention(const WeightScope& weights, const HookNamer& hooks, AttentionConfig config,
                     const RotaryEmbedding* rotary)
    : hook_q(hooks.point("hook_q")),
      hook_k(hooks.point("hook_k", key_axes(hooks, config))),
      hook_v(hooks.point("hook_v", key_axes(hooks, config))),
      hook_rot_q(rotary ? &hooks.point("hook_rot_q") : nullptr),
      hook_rot_k(rotary ? &hooks.point("hook_rot_k", key_axes(hooks, config)) : nullptr),
      hook_attn_scores(hooks.point("hook_attn_scores", pattern_axes(hooks, config))),
      hook_pattern(hooks.point("hook_pattern", pattern_axes(hooks, config))),
      hook_z(hooks.point("hook_z")),
      hook_result(hooks.point("hook_result")),
      config_(std::move(config)),
      rotary_(rotary) {
  const int64_t d = config_.d_model, dh = config_.head_dim();
  const int64_t q_dim = config_.n_heads * dh, kv_dim = config_.kv_heads() * dh;
  if (config_.n_heads <= 0 || config_.n_heads % config_.kv_heads() != 0) {
    throw InvalidInput(fmt::format("attention needs n_heads ({}) to be a positive multiple of "
                                   "n_kv_heads ({})",
                                   config_.n_heads, config_.kv_heads()));
  }
  q_ = Linear(weights.child(config_.q_name), d, q_dim, config_.q_bias);
  k_ = Linear(weights.child(config_.k_name), d, kv_dim, config_.k_bias);
  v_ = Linear(weights.child(config_.v_name), d, kv_dim, config_.v_bias);
  o_ = Linear(weights.child(config_.o_name), q_dim, d, config_.o_bias);
}

bool Attention::needs_explicit_path() const { return hook_attn_scores.is_active() || hook_pattern.is_active(); }

namespace {

// [B, 1 or H, Tq, Tk] bool mask of allowed (query, key) pairs, or undefined when all are.
at::Tensor allowed_pairs(const AttentionMask& mask, int64_t tq, int64_t tk, const at::Device& device) {
  at::Tensor allowed;
  if (mask.causal && tq > 1) {
    // Queries are the last tq of tk positions (earlier ones come from the KV cache).
    auto q_pos = at::arange(tk - tq, tk, at::TensorOptions().device(device).dtype(at::kLong));
    auto k_pos = at::arange(tk, at::TensorOptions().device(device).dtype(at::kLong));
    allowed = (k_pos.unsqueeze(0) <= q_pos.unsqueeze(1)).view({1, 1, tq, tk});
  }
  if (mask.key_valid.defined()) {
    auto keys = mask.key_valid.to(device, at::kBool).view({mask.key_valid.size(0), 1, 1, tk});
    allowed = allowed.defined() ? at::logical_and(allowed, keys) : keys;
    // A query with no visible key (a left-padding position under a causal mask) sees every key
    // instead, as HF's SDPA masks do: the fused kernel would otherwise give it NaN, which then
    // spreads through 0 * NaN to every query that has the padding among its (masked) keys.
    allowed = at::logical_or(allowed, allowed.logical_not().all(-1, /*keepdim=*/true));
  }
  return allowed;
}

double lowest_value(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf: return -65504.0;
    case at::kBFloat16: return -3.3895313892515355e38;
    case at::kDouble: return std::numeric_limits<double>::lowest();
    default: return std::numeric_limits<float>::lowest();
  }
}

// Grouped-query attention: each key/value head serves n_heads / n_kv_heads query heads.
at::Tensor expand_kv_heads(const at::Tensor& kv, int64_t n_heads) {
  const int64_t groups = n_heads / kv.size(1);
  return groups == 1 ? kv : kv.repeat_interleave(groups, /*dim=*/1);
}

}  // namespace

at::Tensor Attention::operator()(const at::Tensor& x, const at::Tensor& source,
                                 const AttentionMask& mask, KVCache* cache,
                                 const at::Tensor& positions) const {
  const int64_t batch = x.size(0), tq = x.size(1);
  const int64_t heads = config_.n_heads, kv_heads = config_.kv_heads(), dh = config_.head_dim();

  auto q = hook_q(q_(x).view({batch, tq, heads, dh}));
  if (rotary_) q = (*hook_rot_q)(rotary_->apply(q, positions));

  at::Tensor k, v;
  if (cache && cache->fixed) {
    k = cache->keys;
    v = cache->values;
  } else {
    const int64_t tk_new = source.size(1);
    k = hook_k(k_(source).view({batch, tk_new, kv_heads, dh}));
    v = hook_v(v_(source).view({batch, tk_new, kv_heads, dh}));
    if (rotary_) k = (*hook_rot_k)(rotary_->apply(k, positions));
    if (cache) {
      if (cache->keys.defined()) {
        k = at::cat({cache->keys, k}, 1);
        v = at::cat({cache->values, v}, 1);
      }
      cache->keys = k;
      cache->values = v;
    }
  }
  const int64_t tk = k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));

  auto qh = q.transpose(1, 2);                         // [B, H, Tq, Dh]
  auto kh = expand_kv_heads(k.transpose(1, 2), heads);  // [B, H, Tk, Dh]
  auto vh = expand_kv_heads(v.transpose(1, 2), heads);
  auto allowed = allowed_pairs(mask, tq, tk, x.device());

  at::Tensor z;  // [B, Tq, H, Dh]
  if (needs_explicit_path()) {
    auto scores = at::matmul(qh, kh.transpose(-1, -2)) * scale;
    if (allowed.defined()) {
      // The dtype's lowest value, as HF masks: a fully masked row stays finite (uniform).
      scores = scores.masked_fill(allowed.logical_not(), lowest_value(scores.scalar_type()));
    }
    scores = hook_attn_scores(scores);
    auto pattern = config_.softmax_in_float32
                       ? at::softmax(scores, -1, at::kFloat).to(scores.scalar_type())
                       : at::softmax(scores, -1);
    pattern = hook_pattern(pattern);
    z = at::matmul(pattern, vh).transpose(1, 2);
  } else {
    std::optional<at::Tensor> attn_mask;
    if (allowed.defined()) attn_mask = allowed;
    z = at::scaled_dot_product_attention(qh, kh, vh, attn_mask, 0.0, false, scale).transpose(1, 2);
  }
  z = hook_z(z);
  if (!hook_result.is_active()) return o_(z.reshape({batch, tq, heads * dh}));
  // Per-head outputs: z_h [B, T, Dh] times W_O's columns of head h -> [B, T, H, D].
  const int64_t d = config_.d_model;
  auto w = o_.weight.view({d, heads, dh});  // [D, H, Dh]
  auto result = hook_result(at::einsum("bthe,dhe->bthd", {z, w}));
  auto out = result.sum(2);
  return o_.bias.defined() ? out + o_.bias : out;
}

void Attention::visit(const TensorVisitor& fn) {
  q_.visit(fn);
  k_.visit(fn);
  v_.visit(fn);
  o_.visit(fn);
}

}  // namespace speechlens::models
