#pragma once
// The wav2vec2 / HuBERT input front end, as HF's Wav2Vec2FeatureExtractor does it: optional
// zero-mean unit-variance normalisation per utterance, (x - mean) / sqrt(var + 1e-7), and
// right padding of a batch to its longest clip with `padding_value`.
//
// HF's quirk is kept on purpose, for parity: the statistics skip padded samples (and padded
// positions are reset to padding_value) only when an attention mask is returned. Without a
// mask, a padded batch is normalised over the padded rows, zeros included, exactly as
// HF models without attention masks (feat_extract_norm == "group") were trained and evaluated.
#include <ATen/core/Tensor.h>

#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace speechlens::audio {

struct WaveformOptions {
  bool do_normalize = true;
  bool return_attention_mask = false;
  float padding_value = 0.0f;
  int sampling_rate = 16000;

  // Reads do_normalize, return_attention_mask, padding_value and sampling_rate from an HF
  // preprocessor_config.json object; missing keys keep the defaults.
  static WaveformOptions from_json(const nlohmann::json& config);
};

struct WaveBatch {
  at::Tensor input_values;    // float32 [B, T_max]
  at::Tensor attention_mask;  // int32 [B, T_max] (1 = real sample); undefined unless asked
};

// Zero mean, unit variance over the whole of each row of `wave` ([T] or [B, T]).
at::Tensor normalize_waveform(const at::Tensor& wave);

// One or more clips of unequal lengths -> a right-padded batch, normalised when asked.
WaveBatch prepare_waveforms(const std::vector<at::Tensor>& waves,
                            const WaveformOptions& options = {});
WaveBatch prepare_waveforms(const std::vector<at::Tensor>& waves, bool do_normalize,
                            bool return_attention_mask = false, float padding_value = 0.0f);

}  // namespace speechlens::audio
