#pragma once
// HookedModel: the one contract every analysis method, the activation store, SAEs and attacks
// are written against. A model family implements it in one file and registers itself
// (models/registry.h); `models::load(dir)` picks the family from config.json.
//
//   inputs  = model.prepare(waves, sampling_rate)        // the model's own front end
//   logits  = model.run(inputs, options)                 // per-call hooks, stop_at, start_at
//   stacks  = model.stacks()                             // encoder / decoder / lm, their layers
//   lens    = model.unembed(stack, model.final_norm(stack, residual))
#include <ATen/core/Tensor.h>

#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/hooks/hook_registry.h"
#include "speechlens/hooks/run_context.h"
#include "speechlens/models/decoding.h"
#include "speechlens/models/layers/module.h"

namespace speechlens::models {

class Norm;

struct LoadOptions {
  std::optional<at::ScalarType> dtype;  // convert floating-point weights (default: as stored)
  std::optional<at::Device> device;     // default: CPU
};

// One forward's inputs. Which fields a model reads is the model's business: Whisper takes
// log-mel `features` [B, n_mels, T] and decoder `tokens` [B, S]; HuBERT takes waveform
// `features` [B, samples] only; Qwen2-Audio takes log-mel features, input ids and a token mask.
// A value type: analysis code repeats, selects and compares inputs through these methods, so a
// field added here travels everywhere.
struct ModelInputs {
  at::Tensor features;
  at::Tensor tokens;
  // [B] valid lengths of `features` along time (mel frames or samples); undefined when every
  // position is valid.
  at::Tensor feature_lengths;
  // [B, S] 1 for real tokens, 0 for padding (left or right); undefined when every token is real.
  at::Tensor token_mask;

  // The batch size every defined field agrees on (throws when they disagree or none is defined).
  int64_t batch_size() const;
  // The inputs repeated `times` along the batch (rows copy-major: row = copy * B + item).
  ModelInputs repeat(int64_t times) const;
  // The rows `rows` (in that order) of every field.
  ModelInputs select(const std::vector<int64_t>& rows) const;
  // Throws InvalidInput naming the first field in which `other` cannot stand in for these inputs
  // row for row (patching swaps slices between them): a field defined in one only, a different
  // shape, different valid lengths or a different token mask.
  void check_compatible(const ModelInputs& other, const std::string& what = "the two inputs") const;
  // Structural checks every model runs on entry: floating features, integer tokens, finite
  // values, lengths in range, masks of the tokens' shape.
  void validate() const;
};

// A hook for one call only.
struct CallHook {
  hooks::HookSelector selector;
  hooks::HookFn fn;
  hooks::Direction direction = hooks::Direction::forward;
};

// Options of one call. Nothing here outlives the call, and nothing is shared with other calls.
struct RunOptions {
  std::vector<CallHook> hooks;
  // End the forward right after this hook point fires and return its activation instead of the
  // logits (no later computation runs beyond the end of the block it is in).
  std::optional<std::string> stop_at;
  // Resume the forward at a block's residual stream ('<stack>.blocks.<i>.hook_resid_pre' or
  // '.hook_resid_post') with `start_value`; everything before it is skipped (hooks there do not
  // fire). Inputs are still needed for what follows (decoder tokens, lengths, masks).
  std::optional<std::string> start_at;
  at::Tensor start_value;
  // Encoder-decoder and audio-LM models: the audio encoder's output to use instead of running
  // the encoder (Whisper: ln_post output [B, T', D]; Qwen2-Audio: projected audio features
  // [B, T', D_lm]). Rows may be fewer than the inputs' and are then repeated copy-major.
  at::Tensor encoder_output;

  RunOptions& add_hook(hooks::HookSelector selector, hooks::HookFn fn,
                       hooks::Direction direction = hooks::Direction::forward) {
    hooks.push_back({std::move(selector), std::move(fn), direction});
    return *this;
  }
};

// One stack of the model (a transformer stack with blocks).
struct StackInfo {
  hooks::Stack stack;
  std::string prefix;   // hook-name prefix: "encoder", "decoder", "lm", "audio_encoder"
  int64_t n_layers = 0;
  int64_t d_model = 0;
  bool causal = false;
  bool has_head = false;  // unembed(stack, .) maps its residual stream to logits
  std::string unit;     // the unit of its positions (valid lengths key)
  std::string final_norm;  // hook prefix of its final norm ("decoder.ln_final"); "" when none

  std::string block_hook(int64_t layer, const std::string& relative) const;  // "<prefix>.blocks.<i>.<relative>"
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
  // The checkpoint folder the model was loaded from (side files: tokenizer, processor).
  const std::filesystem::path& checkpoint_dir() const { return dir_; }

  // -- running ---------------------------------------------------------------------------
  // One forward: the logits, or the stop_at activation. Thread-safe and re-entrant: every call
  // has its own run state and hooks.
  at::Tensor run(const ModelInputs& inputs, const RunOptions& options = {});
  at::Tensor forward(const ModelInputs& inputs) { return run(inputs); }
  // One forward that records the activations of the points `names` selects.
  std::pair<at::Tensor, std::shared_ptr<hooks::ActivationCache>> run_with_cache(
      const ModelInputs& inputs, const hooks::HookSelector& names, hooks::CacheOptions cache_options = {},
      const RunOptions& options = {});

  // Greedy decoding with a KV cache (encoder-decoder and audio-LM models); hooks fire at every
  // step (the context's decode_step says which, 0 being the prompt). Returns the generated
  // tokens per item, without the prompt, ending at (and excluding) an end token. `options`
  // apply to the prompt pass (e.g. start_at to decode from an encoder layer).
  virtual std::vector<std::vector<int64_t>> generate(const ModelInputs& inputs, const GenerateOptions& generate = {},
                                                     const RunOptions& options = {});
  // Text per clip (greedy decoding, or greedy CTC for CTC models).
  virtual std::vector<std::string> transcribe(const std::vector<at::Tensor>& waves,
                                              std::optional<int64_t> sampling_rate = std::nullopt);

  // -- front end -------------------------------------------------------------------------
  // The rate the model's front end takes (Hz).
  virtual int64_t sampling_rate() const { return 16000; }
  // Raw mono clips -> the padded batch the model takes (log-mel or normalised waveform), with
  // valid lengths; clips at another rate are resampled when `sampling_rate` says so. Gradients
  // flow back to the waves when they require grad. Models with decoder inputs fill their
  // default prompt where they have one.
  virtual ModelInputs prepare(const std::vector<at::Tensor>& waves,
                              std::optional<int64_t> sampling_rate = std::nullopt) const = 0;

  // -- stacks and read-outs ----------------------------------------------------------------
  virtual std::vector<StackInfo> stacks() const = 0;
  // The stack's description; throws naming the model's stacks when it has no such stack.
  StackInfo stack(hooks::Stack stack) const;
  // The stack's final norm (without its hook) on a residual stream of that stack; the identity
  // for stacks that end without one. Qwen2-Audio's audio stack pools frames first.
  virtual at::Tensor final_norm(hooks::Stack stack, const at::Tensor& residual) const;
  // The final norm layer of a stack (nullptr when the stack has none).
  virtual const Norm* final_norm_layer(hooks::Stack stack) const = 0;
  // The stack's head on a normed residual stream: LM / decoder head, CTC head. Throws for a
  // stack without a head (Whisper's encoder: decode from it with start_at instead).
  virtual at::Tensor unembed(hooks::Stack stack, const at::Tensor& normed) const = 0;
  // The head's weight [vocab, d_model] (for direct logit attribution).
  virtual at::Tensor unembedding(hooks::Stack stack) const = 0;

  // -- hooks -------------------------------------------------------------------------------
  hooks::HookRegistry& hooks() { return registry_; }
  const hooks::HookRegistry& hooks() const { return registry_; }
  std::vector<std::string> hook_names() const { return registry_.names(); }

  // Moves / converts every weight (floating-point weights only for dtype; dtype must be a
  // floating type). Waits for running calls to finish.
  void to(std::optional<at::Device> device, std::optional<at::ScalarType> dtype);
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

 protected:
  HookedModel() = default;
  virtual void visit(const TensorVisitor& fn) = 0;
  // The family's forward under an active call context (lengths, hooks, stop/start set).
  virtual at::Tensor run_impl(const ModelInputs& inputs, const RunOptions& options, hooks::RunContext& ctx) = 0;
  // Records the device and floating dtype the weights ended up with after loading.
  void settle_placement();
  void set_checkpoint_dir(std::filesystem::path dir) { dir_ = std::move(dir); }
  // Where a model's inputs enter the graph. Weights carry no gradient, so when a backward hook
  // is attached (and grad mode is on) the input is made a leaf that requires grad: every
  // activation downstream then has a gradient for the hook to see.
  at::Tensor enter_graph(at::Tensor input) const;
  // Resamples clips given at `sampling_rate` to the model's rate (warns once per model when no
  // rate is given and assumes the model's).
  std::vector<at::Tensor> to_model_rate(const std::vector<at::Tensor>& waves, std::optional<int64_t> sampling_rate) const;

  // A call frame, made at each public entry point: a shared lock on the weights (not taken
  // again by a re-entrant call, which already holds it; to() waits for running calls), the
  // inputs validated, and the context with the options applied, active on this thread while the
  // frame lives.
  class Call {
   public:
    Call(HookedModel& model, const RunOptions& options, const ModelInputs& inputs);
    hooks::RunContext& context() { return context_; }
    // The call's result: the stop_at activation when it stopped, else `output`.
    at::Tensor result(at::Tensor output) const;

   private:
    std::shared_lock<std::shared_mutex> lock_;
    hooks::RunContext context_;
    hooks::RunGuard guard_;
    bool wanted_stop_;
  };

  // A side file read on first use (a tokenizer, a processor): `load` runs once; get() throws
  // what `load` threw when it failed, available() says whether it succeeded.
  template <typename T>
  class SideFile {
   public:
    template <typename Load>
    const T& get(Load&& load) const {
      std::call_once(once_, [&] {
        try {
          value_ = std::make_shared<T>(load());
        } catch (...) {
          error_ = std::current_exception();
        }
      });
      if (error_) std::rethrow_exception(error_);
      return *value_;
    }
    template <typename Load>
    bool available(Load&& load) const {
      try {
        get(std::forward<Load>(load));
        return true;
      } catch (const std::exception&) {
        return false;
      }
    }

   private:
    mutable std::once_flag once_;
    mutable std::shared_ptr<T> value_;
    mutable std::exception_ptr error_;
  };

  hooks::HookRegistry registry_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  std::filesystem::path dir_;
  mutable std::shared_mutex weights_mutex_;

};

}  // namespace speechlens::models
