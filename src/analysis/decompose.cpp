#include "speechlens/analysis/decompose.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/models/layers/norm.h"
#include "speechlens/util/error.h"

namespace speechlens::analysis {

namespace {

const models::Norm& norm_of(const models::HookedModel& model, hooks::Stack stack) {
  const models::Norm* norm = model.final_norm_layer(stack);
  if (!norm) {
    throw InvalidInput(fmt::format("the {} stack of this {} model ends without a final norm; its residual stream "
                                   "is read as it is",
                                   hooks::to_string(stack), model.family()));
  }
  return *norm;
}

// W_U rows of `tokens` [B, T] -> [B, T, D], with the norm's weight folded in.
at::Tensor directions(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& tokens) {
  const at::Tensor w_u = model.unembedding(stack);
  if (tokens.dim() < 1 || at::isFloatingType(tokens.scalar_type())) {
    throw InvalidInput(fmt::format("tokens must be integer ids [B, T], got {}", c10::str(tokens.sizes())));
  }
  return at::embedding(w_u, tokens.to(w_u.device(), at::kLong));
}

}  // namespace

at::Tensor apply_ln_to_stack(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& components,
                             const at::Tensor& scale) {
  const auto& norm = norm_of(model, stack);
  if (!scale.defined() || scale.dim() < 1 || scale.size(-1) != 1) {
    throw InvalidInput(fmt::format("scale must be the final norm's hook_scale [B, T, 1], got {}",
                                   scale.defined() ? c10::str(scale.sizes()) : std::string("nothing")));
  }
  return norm.apply_with_scale(components, scale, /*affine=*/false);
}

at::Tensor logit_attrs(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& normed_components,
                       const at::Tensor& tokens, const at::Tensor& incorrect) {
  const auto& norm = norm_of(model, stack);
  at::Tensor dirs = directions(model, stack, tokens);
  if (incorrect.defined()) dirs = dirs - directions(model, stack, incorrect);
  dirs = dirs * norm.weight();
  return (normed_components.to(dirs.scalar_type()) * dirs).sum(-1);
}

at::Tensor bias_logit_attrs(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& tokens,
                            const at::Tensor& incorrect) {
  const auto& norm = norm_of(model, stack);
  at::Tensor dirs = directions(model, stack, tokens);
  if (incorrect.defined()) dirs = dirs - directions(model, stack, incorrect);
  if (!norm.bias().defined()) return at::zeros(dirs.sizes().slice(0, dirs.dim() - 1), dirs.options());
  return (dirs * norm.bias()).sum(-1);
}

}  // namespace speechlens::analysis
