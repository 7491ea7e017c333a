#pragma once
// Lenses on Whisper: what each layer's residual stream would predict if the model stopped there.
//
// Logit lens (decoder): every decoder layer's residual stream through the decoder's final norm
// and the unembedding. Encoder lens: encoder layer L's output through the encoder's final norm
// (ln_post), fed to the full decoder as if it were the encoder's output.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "speechlens/models/whisper.h"

namespace speechlens::analysis {

struct LogitLensResult {
  // [layers + 1, B, S, vocab]: row 0 reads the embeddings (decoder.blocks.0.hook_resid_pre),
  // row i + 1 the output of decoder block i; the last row equals the model's logits.
  at::Tensor logits;
  std::vector<std::string> hook_names;  // the residual stream each row reads
};

LogitLensResult logit_lens(models::HookedWhisper& model, const models::ModelInputs& inputs);

// Encoder layer `layer`'s output (encoder.blocks.{layer}.hook_resid_post) through ln_post:
// audio states [B, T', D] in the decoder's input space. The encoder stops after that block.
at::Tensor encoder_lens_audio(models::HookedWhisper& model, const at::Tensor& mel, int64_t layer,
                              const at::Tensor& mel_lengths = {});

struct EncoderLensResult {
  std::vector<int64_t> layers;
  // Teacher-forced decoder logits per layer [layers, B, S, vocab] (when tokens were given).
  at::Tensor logits;
  // Greedy transcripts per layer and batch item (token ids without the prompt).
  std::vector<std::vector<std::vector<int64_t>>> tokens;
};

struct EncoderLensOptions {
  std::vector<int64_t> layers;        // empty: every encoder layer
  at::Tensor tokens;                  // [B, S] teacher-forced decoder tokens (optional)
  bool generate = true;               // greedy-decode from each layer
  models::GreedyOptions greedy;       // prompt, max_new_tokens (0: 64), suppress rules
};

EncoderLensResult encoder_lens(models::HookedWhisper& model, const at::Tensor& mel,
                               const EncoderLensOptions& options = {}, const at::Tensor& mel_lengths = {});



}  // namespace speechlens::analysis
