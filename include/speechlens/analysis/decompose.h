#pragma once
// TransformerLens's linear decomposition of a residual stream through a stack's final norm:
// divide each component by the norm's cached scale (its hook_scale from the forward that made
// the components) instead of renormalising each one, so that the parts add up to the model's
// output exactly. Direct logit attribution is then a sum over components.
#include <ATen/core/Tensor.h>

#include "speechlens/models/hooked_model.h"

namespace speechlens::analysis {

// components [..., B, T, D] (any leading dims), scale [B, T, 1] (the final norm's hook_scale)
// -> LayerNorm: (c - mean(c)) / scale; RMSNorm: c / scale. Without the norm's weight and bias,
// as TransformerLens's apply_ln_to_stack (whose weights are folded into the unembedding).
at::Tensor apply_ln_to_stack(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& components,
                             const at::Tensor& scale);

// Each normed component's contribution to the logits of `tokens` [B, T] (the token read at each
// position): (c * w) . W_U[token] -> [..., B, T]. With `incorrect` also given, the difference of
// the two tokens' contributions (a logit difference).
at::Tensor logit_attrs(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& normed_components,
                       const at::Tensor& tokens, const at::Tensor& incorrect = {});

// The part of those logits no component carries: the norm's bias read by the head (b . W_U[token])
// [B, T] (zero for RMSNorm). The components' logit_attrs summed plus this equal the logits.
at::Tensor bias_logit_attrs(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& tokens,
                            const at::Tensor& incorrect = {});

}  // namespace speechlens::analysis
