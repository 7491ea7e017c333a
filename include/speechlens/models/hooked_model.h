#pragma once
// What every hooked model offers, so that caching, patching and the analysis toolkit work on
// Whisper, HuBERT and later models without knowing which one they hold.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

struct LoadOptions {
  std::optional<at::ScalarType> dtype;  // convert floating-point weights (default: as stored)
  std::optional<at::Device> device;     // default: CPU
};

// One forward's inputs. Which fields a model reads is the model's business: Whisper takes
// log-mel `features` [B, n_mels, T] and decoder `tokens` [B, S]; HuBERT takes waveform
// `features` [B, samples] only.
struct ModelInputs {
  at::Tensor features;
  at::Tensor tokens;
  // [B] valid lengths of `features` along time (mel frames or samples); undefined when every
  // position is valid.
  at::Tensor feature_lengths;
  // [B, S] 1 for real tokens, 0 for padding (left or right); undefined when every token is
  // real. Read by models whose token batches are padded (Qwen2-Audio).
  at::Tensor token_mask;
};

class HookedModel {
 public:
  virtual ~HookedModel() = default;
  HookedModel(const HookedModel&) = delete;
  HookedModel& operator=(const HookedModel&) = delete;

  virtual std::string family() const = 0;
  // The model's configuration with TransformerLens-style keys (n_layers, d_model, n_heads,
  // d_head, d_mlp, ...) plus the model's own.
  virtual nlohmann::json config_json() const = 0;
  // The logits of one full forward.
  virtual at::Tensor forward(const ModelInputs& inputs) = 0;

  hooks::HookRegistry& hooks() { return registry_; }
  const hooks::HookRegistry& hooks() const { return registry_; }
  const std::vector<std::string>& hook_names() const { return registry_.names(); }

  // Moves / converts every weight (floating-point weights only for dtype).
  void to(std::optional<at::Device> device, std::optional<at::ScalarType> dtype);
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

 protected:
  HookedModel() = default;
  virtual void visit(const TensorVisitor& fn) = 0;
  // Records the device and floating dtype the weights ended up with after loading.
  void settle_placement();
  // Where a model's inputs enter the graph. Weights carry no gradient, so when a backward hook
  // is attached (and grad mode is on) the input is made a leaf that requires grad: every
  // activation downstream then has a gradient for the hook to see.
  at::Tensor enter_graph(at::Tensor input) const;

  hooks::HookRegistry registry_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
};

}  // namespace speechlens::models
