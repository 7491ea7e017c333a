#include "speechlens/audio/normalize.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace speechlens::audio {
namespace {

constexpr double kVarianceEpsilon = 1e-7;

// HF computes the statistics in float32 with numpy; accumulating in float64 here keeps the
// result within float32 rounding of HF's for any clip length.
at::Tensor normalized_rows(const at::Tensor& rows) {
  const at::Tensor wide = rows.to(at::kDouble);
  const at::Tensor mean = wide.mean(-1, /*keepdim=*/true);
  const at::Tensor variance = (wide - mean).pow(2).mean(-1, /*keepdim=*/true);
  return ((wide - mean) / at::sqrt(variance + kVarianceEpsilon)).to(at::kFloat);
}

at::Tensor checked_clip(const at::Tensor& wave, size_t index) {
  if (!wave.defined() || wave.dim() != 1 || wave.size(0) == 0 || !wave.is_floating_point()) {
    throw InvalidInput(fmt::format(
        "prepare_waveforms: item {} must be a non-empty 1-D floating-point waveform, got {}",
        index, wave.defined() ? fmt::format("{} {}", c10::toString(wave.scalar_type()),
                                            c10::str(wave.sizes()))
                              : std::string("undefined")));
  }
  return wave.to(at::kFloat);
}

}  // namespace

WaveformOptions WaveformOptions::from_json(const nlohmann::json& config) {
  if (!config.is_object()) throw InvalidInput("preprocessor config must be a JSON object");
  WaveformOptions options;
  if (config.contains("do_normalize")) options.do_normalize = config["do_normalize"].get<bool>();
  if (config.contains("return_attention_mask")) {
    options.return_attention_mask = config["return_attention_mask"].get<bool>();
  }
  if (config.contains("padding_value") && config["padding_value"].is_number()) {
    options.padding_value = config["padding_value"].get<float>();
  }
  if (config.contains("sampling_rate") && config["sampling_rate"].is_number_integer()) {
    options.sampling_rate = config["sampling_rate"].get<int>();
  }
  return options;
}

at::Tensor normalize_waveform(const at::Tensor& wave) {
  if (!wave.defined() || (wave.dim() != 1 && wave.dim() != 2) || !wave.is_floating_point() ||
      wave.size(-1) == 0) {
    throw InvalidInput(
        "normalize_waveform expects a non-empty floating-point waveform [T] or [B, T]");
  }
  return normalized_rows(wave);
}

WaveBatch prepare_waveforms(const std::vector<at::Tensor>& waves, const WaveformOptions& options) {
  if (waves.empty()) throw InvalidInput("prepare_waveforms: the batch is empty");
  std::vector<at::Tensor> clips;
  clips.reserve(waves.size());
  int64_t longest = 0;
  for (size_t i = 0; i < waves.size(); ++i) {
    clips.push_back(checked_clip(waves[i], i));
    longest = std::max(longest, clips.back().size(0));
  }
  const auto batch = static_cast<int64_t>(clips.size());
  WaveBatch result;
  result.input_values = at::full({batch, longest}, options.padding_value,
                                 clips.front().options());
  at::Tensor mask = at::zeros({batch, longest}, at::kInt);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = clips[b].size(0);
    mask[b].narrow(0, 0, length).fill_(1);
    at::Tensor row = result.input_values[b];
    if (!options.do_normalize) {
      row.narrow(0, 0, length).copy_(clips[b]);
    } else if (options.return_attention_mask) {
      row.narrow(0, 0, length).copy_(normalized_rows(clips[b]));
    } else {
      // No mask: HF normalises the padded row as a whole (see the header).
      row.narrow(0, 0, length).copy_(clips[b]);
      row.copy_(normalized_rows(row));
    }
  }
  if (options.return_attention_mask) result.attention_mask = mask;
  return result;
}

WaveBatch prepare_waveforms(const std::vector<at::Tensor>& waves, bool do_normalize,
                            bool return_attention_mask, float padding_value) {
  WaveformOptions options;
  options.do_normalize = do_normalize;
  options.return_attention_mask = return_attention_mask;
  options.padding_value = padding_value;
  return prepare_waveforms(waves, options);
}

}  // namespace speechlens::audio
