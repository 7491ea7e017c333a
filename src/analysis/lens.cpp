#include "speechlens/analysis/lens.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/util/error.h"

namespace speechlens::analysis {

namespace {

// Ends the encoder early, carrying the residual stream out of the forward.
struct StopEncoder {
  at::Tensor residual;
};

void check_layer(const models::HookedWhisper& model, int64_t layer) {
  const auto layers = static_cast<int64_t>(model.encoder_blocks().size());
  if (layer < 0 || layer >= layers) {
    throw InvalidInput(fmt::format("encoder layer {} is out of range; this model has encoder layers 0..{}", layer,
                                   layers - 1));
  }
}

}  // namespace

LogitLensResult logit_lens(models::HookedWhisper& model, const models::ModelInputs& inputs) {
  const auto layers = static_cast<int64_t>(model.decoder_blocks().size());
  LogitLensResult result;
  result.hook_names.push_back("decoder.blocks.0.hook_resid_pre");
  for (int64_t i = 0; i < layers; ++i) result.hook_names.push_back(fmt::format("decoder.blocks.{}.hook_resid_post", i));
  hooks::ActivationCache cache;
  {
    hooks::HookScope scope(model.hooks());
    for (const auto& name : result.hook_names) scope.add(hooks::HookSelector::exact(name), cache.recorder());
    model.forward(inputs);
  }
  std::vector<at::Tensor> rows;
  for (const auto& name : result.hook_names) {
    rows.push_back(model.unembed(model.decoder_final_norm().apply(cache.get(name))));
  }
  result.logits = at::stack(rows);
  return result;
}

at::Tensor encoder_lens_audio(models::HookedWhisper& model, const at::Tensor& mel, int64_t layer,
                              const at::Tensor& mel_lengths) {
  check_layer(model, layer);
  at::Tensor residual;
  {
    hooks::HookScope scope(model.hooks());
    scope.add(hooks::HookSelector::exact(fmt::format("encoder.blocks.{}.hook_resid_post", layer)),
              [](const at::Tensor& act, hooks::HookContext&) -> std::optional<at::Tensor> {
                throw StopEncoder{act};
              });
    try {
      model.encode(mel, mel_lengths);
    } catch (StopEncoder& stop) {
      residual = std::move(stop.residual);
    }
  }
  if (!residual.defined()) throw Error("the encoder finished without reaching the lens hook");
  return model.encoder_final_norm().apply(residual);
}

EncoderLensResult encoder_lens(models::HookedWhisper& model, const at::Tensor& mel, const EncoderLensOptions& options,
                               const at::Tensor& mel_lengths) {
  EncoderLensResult result;
  result.layers = options.layers;
  if (result.layers.empty()) {
    for (size_t i = 0; i < model.encoder_blocks().size(); ++i) result.layers.push_back(static_cast<int64_t>(i));
  }
  models::GreedyOptions greedy = options.greedy;
  if (greedy.max_new_tokens <= 0) greedy.max_new_tokens = 64;
  std::vector<at::Tensor> logits;
  for (int64_t layer : result.layers) {
    at::Tensor audio = encoder_lens_audio(model, mel, layer, mel_lengths);
    if (options.tokens.defined()) logits.push_back(model.decode(options.tokens, audio));
    if (options.generate) result.tokens.push_back(model.generate_from_audio(audio, greedy));
  }
  if (!logits.empty()) result.logits = at::stack(logits);
  return result;
}

}  // namespace speechlens::analysis
