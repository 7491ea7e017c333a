// A downstream C++ program on the installed SpeechLens: load a Whisper checkpoint folder, cache
// the encoder's residual stream, ablate one MLP, compare the logits.
//
//     speechlens_consumer path/to/whisper-checkpoint
#include <ATen/ATen.h>

#include <iostream>

#include <speechlens/speechlens.h>

int main(int argc, char** argv) {
  std::cout << "SpeechLens " << sl::version() << " on torch " << sl::torch_version() << "\n";
  if (argc < 2) return 0;

  auto model = sl::models::HookedWhisper::from_pretrained(argv[1]);
  const auto& config = model->config();
  auto mel = at::randn({1, config.n_mels, 2 * config.max_source_positions});
  auto tokens = at::tensor({config.decoder_start_token_id}).view({1, 1});

  sl::hooks::ActivationCache cache;
  at::Tensor clean;
  {
    sl::hooks::HookScope scope(model->hooks());  // removes its hooks when it goes
    scope.add("encoder.blocks.*.hook_resid_post", cache.recorder());
    clean = model->forward({mel, tokens, {}});
  }
  sl::hooks::HookScope ablation(model->hooks());
  ablation.add("decoder.blocks.0.hook_mlp_out",
               [](const at::Tensor& act, sl::hooks::HookContext&) -> std::optional<at::Tensor> {
                 return at::zeros_like(act);
               });
  auto ablated = model->forward({mel, tokens, {}});
  std::cout << cache.size() << " cached, last " << cache.names().back() << " "
            << cache[cache.names().back()].sizes() << "; ablation moved the logits by "
            << (ablated - clean).abs().max().item<float>() << "\n";
  return cache.size() == static_cast<size_t>(config.encoder_layers) ? 0 : 1;
}
