// A downstream C++ program on the installed SpeechLens: load a checkpoint folder (the family
// comes from its config.json), cache the encoder's residual stream, ablate one MLP, compare the
// logits.
//
//     speechlens_consumer path/to/whisper-checkpoint
#include <ATen/ATen.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include <speechlens/speechlens.h>

int main(int argc, char** argv) {
  std::cout << "SpeechLens " << sl::version() << " on torch " << sl::torch_version() << "\n";
  if (argc < 2) return 0;

  auto model = sl::models::load(argv[1]);
  const auto config = model->config_json();
  sl::models::ModelInputs inputs;
  inputs.features = at::randn({1, config["n_mels"].get<int64_t>(), 2 * config["n_ctx_encoder"].get<int64_t>()});
  inputs.tokens = at::tensor({config["decoder_start_token_id"].get<int64_t>()}).view({1, 1});

  sl::hooks::ActivationCache cache;
  sl::models::RunOptions record;  // hooks for this call only
  record.add_hook("encoder.blocks.*.hook_resid_post", cache.recorder());
  const at::Tensor clean = model->run(inputs, record);

  sl::models::RunOptions ablation;
  ablation.add_hook("decoder.blocks.0.hook_mlp_out",
                    [](const at::Tensor& act, sl::hooks::HookContext&) -> std::optional<at::Tensor> {
                      return at::zeros_like(act);
                    });
  const at::Tensor ablated = model->run(inputs, ablation);
  std::cout << model->family() << ": " << cache.size() << " cached, last " << cache.names().back() << " "
            << cache[cache.names().back()].sizes() << "; ablation moved the logits by "
            << (ablated - clean).abs().max().item<float>() << "\n";
  return cache.size() == static_cast<size_t>(config["n_encoder_layers"].get<int64_t>()) ? 0 : 1;
}
