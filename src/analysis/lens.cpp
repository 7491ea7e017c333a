#include "speechlens/analysis/lens.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/util/error.h"

namespace speechlens::analysis {

namespace {

models::StackInfo pick_stack(const models::HookedModel& model, std::optional<hooks::Stack> stack) {
  if (stack) return model.stack(*stack);
  for (const auto& s : model.stacks()) {
    if (s.has_head) return s;
  }
  throw InvalidInput(fmt::format("this {} model has no stack with a head (no CTC or LM head); name a stack to decode "
                                 "from instead",
                                 model.family()));
}

std::vector<int64_t> layers_of(const models::StackInfo& stack, const std::vector<int64_t>& wanted) {
  std::vector<int64_t> layers = wanted;
  if (layers.empty()) {
    for (int64_t i = 0; i < stack.n_layers; ++i) layers.push_back(i);
  }
  for (int64_t layer : layers) {
    if (layer < 0 || layer >= stack.n_layers) {
      throw InvalidInput(fmt::format("layer {} is out of range; the {} stack has layers 0..{}", layer,
                                     hooks::to_string(stack.stack), stack.n_layers - 1));
    }
  }
  return layers;
}

// The residual streams (resid_post of each of `layers`, and resid_pre of block 0 when asked) of
// one forward that stops after the last one needed.
std::vector<at::Tensor> residuals(models::HookedModel& model, const models::ModelInputs& inputs,
                                  const models::StackInfo& stack, const std::vector<std::string>& names) {
  hooks::ActivationCache cache;
  models::RunOptions options;
  for (const auto& name : names) options.add_hook(hooks::HookSelector::exact(name), cache.recorder());
  // The lens needs nothing after the last residual it reads.
  options.stop_at = names.back();
  model.run(inputs, options);
  std::vector<at::Tensor> out;
  for (const auto& name : names) out.push_back(cache.get(name));
  return out;
}

}  // namespace

models::RunOptions read_from_layer(const models::HookedModel& model, hooks::Stack which, const at::Tensor& residual) {
  const auto stack = model.stack(which);
  models::RunOptions options;
  options.start_at = stack.block_hook(stack.n_layers - 1, "hook_resid_post");
  options.start_value = residual;
  return options;
}

LogitLensResult logit_lens(models::HookedModel& model, const models::ModelInputs& inputs, const LensOptions& options) {
  c10::NoGradGuard no_grad;
  const auto stack = pick_stack(model, options.stack);
  LogitLensResult result;
  result.stack = stack.stack;
  std::vector<std::string> names;
  if (options.include_input) {
    names.push_back(stack.block_hook(0, "hook_resid_pre"));
    result.layers.push_back(-1);
  }
  for (int64_t layer : layers_of(stack, options.layers)) {
    names.push_back(stack.block_hook(layer, "hook_resid_post"));
    result.layers.push_back(layer);
  }
  result.hook_names = names;
  const auto streams = residuals(model, inputs, stack, names);
  std::vector<at::Tensor> rows;
  for (const auto& residual : streams) {
    if (stack.has_head) {
      rows.push_back(model.unembed(stack.stack, model.final_norm(stack.stack, residual)));
    } else {
      rows.push_back(model.run(inputs, read_from_layer(model, stack.stack, residual)));
    }
  }
  result.logits = at::stack(rows);
  return result;
}

LayerDecodeResult decode_from_layers(models::HookedModel& model, const models::ModelInputs& inputs,
                                     const LayerDecodeOptions& options) {
  c10::NoGradGuard no_grad;
  const auto stack = model.stack(options.stack);
  LayerDecodeResult result;
  result.stack = stack.stack;
  result.layers = layers_of(stack, options.layers);
  std::vector<std::string> names;
  for (int64_t layer : result.layers) names.push_back(stack.block_hook(layer, "hook_resid_post"));
  const auto streams = residuals(model, inputs, stack, names);
  models::GenerateOptions generation = options.generation;
  if (generation.max_new_tokens <= 0) generation.max_new_tokens = 64;
  std::vector<at::Tensor> logits;
  const bool generates = model.stacks().size() > 1;
  models::ModelInputs teacher = inputs;
  if (options.teacher_tokens.defined()) teacher.tokens = options.teacher_tokens;
  const bool teacher_forced = options.teacher_forced && (teacher.tokens.defined() || !generates);
  for (const auto& residual : streams) {
    const auto run = read_from_layer(model, stack.stack, residual);
    if (teacher_forced) logits.push_back(model.run(teacher, run));
    if (options.generate && generates) result.tokens.push_back(model.generate(inputs, generation, run));
  }
  if (!logits.empty()) result.logits = at::stack(logits);
  return result;
}

}  // namespace speechlens::analysis
