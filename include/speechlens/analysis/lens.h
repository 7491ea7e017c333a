#pragma once
// Lenses: what each layer's residual stream would predict if the model stopped there, for every
// model family, written once against HookedModel.
//
// Logit lens: a stack with a head of its own (Whisper's decoder, Qwen2-Audio's language model,
// HuBERT / wav2vec2 CTC encoders) reads each layer through the stack's final norm and head.
// A stack without one (Whisper's and Qwen2-Audio's audio encoders) is read by decoding from it:
// layer L's residual stream stands in for the stack's last one (start_at at the last block's
// hook_resid_post), so the rest of the model (final norm, decoder or language model) reads it.
// That is the Whisper "encoder lens" and its Qwen2-Audio (AudioLens-style) counterpart.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "speechlens/models/hooked_model.h"

namespace speechlens::analysis {

struct LensOptions {
  // Which stack to read; unset: the first stack with a head (Whisper: decoder; Qwen2-Audio: lm;
  // HuBERT: encoder).
  std::optional<hooks::Stack> stack;
  // Layers whose output (hook_resid_post) is read; empty: every layer. Row 0 of the result reads
  // the stack's input (blocks.0.hook_resid_pre) when include_input is set.
  std::vector<int64_t> layers;
  bool include_input = true;
};

struct LogitLensResult {
  // [rows, B, S, vocab]: row per read residual stream (the stack's input first when asked, then
  // each layer's output). For the last layer of a stack with a head it equals the model's logits.
  at::Tensor logits;
  std::vector<std::string> hook_names;  // the residual stream each row reads
  std::vector<int64_t> layers;          // -1 for the stack's input
  hooks::Stack stack = hooks::Stack::none;
};

LogitLensResult logit_lens(models::HookedModel& model, const models::ModelInputs& inputs,
                           const LensOptions& options = {});

// The model's outputs when layer `layer` of `stack` stands in for the stack's last layer.
// Greedy transcripts per layer for generating models.
struct LayerDecodeOptions {
  hooks::Stack stack = hooks::Stack::encoder;
  std::vector<int64_t> layers;              // empty: every layer
  // Teacher-forced logits of these tokens [B, S] (the inputs with their tokens replaced);
  // undefined: of the inputs as they are when they hold tokens (or have no decoder at all).
  at::Tensor teacher_tokens;
  bool teacher_forced = true;
  bool generate = true;                     // greedy decoding from each layer, from the inputs' prompt
  models::GenerateOptions generation;       // max_new_tokens (0: 64), prompt, suppress rules
};

struct LayerDecodeResult {
  hooks::Stack stack = hooks::Stack::none;
  std::vector<int64_t> layers;
  at::Tensor logits;  // [layers, B, S, vocab] (undefined when not teacher forced)
  std::vector<std::vector<std::vector<int64_t>>> tokens;  // [layer][item] generated ids
};

LayerDecodeResult decode_from_layers(models::HookedModel& model, const models::ModelInputs& inputs,
                                     const LayerDecodeOptions& options = {});

// The run options that make `residual` (layer L's output of `stack`) stand in for the stack's
// last layer.
models::RunOptions read_from_layer(const models::HookedModel& model, hooks::Stack stack, const at::Tensor& residual);

}  // namespace speechlens::analysis
