#pragma once
// Whisper's log-mel front end, the same method as Hugging Face's WhisperFeatureExtractor
// (transformers 5.x, its torch path):
//   pad with zeros / truncate to n_samples (30 s) -> STFT (n_fft 400, hop 160, periodic Hann
//   window, center=True with reflect padding) -> |X|^2 with the last frame dropped -> Slaney
//   mel filter bank (0-8000 Hz, Slaney area normalisation, computed here) -> log10(max(x,
//   1e-10)) -> max(x, max_over_utterance - 8) -> (x + 4) / 4.
// Parity with HF is measured in tests/python/test_audio.py and reported in docs/audio.md.
#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace speechlens::audio {

namespace detail {
struct MelPlan;
struct MelClip;
}  // namespace detail

struct WhisperFeatureOptions {
  int n_mels = 80;
  int sampling_rate = 16000;
  int n_fft = 400;
  int hop_length = 160;
  int n_samples = 480000;  // chunk_length * sampling_rate
  float padding_value = 0.0f;

  // Reads an HF preprocessor_config.json object: feature_size, sampling_rate, n_fft,
  // hop_length, n_samples (or chunk_length), padding_value; missing keys keep the defaults.
  // Every value is range-checked before use (InvalidInput naming the key): feature_size <=
  // 1024, sampling_rate <= 1 MHz, n_fft and hop_length <= 8192, chunk_length <= 600 s and
  // n_samples <= 600 s at 48 kHz; the constructor checks the same bounds.
  static WhisperFeatureOptions from_json(const nlohmann::json& config);
};

// How a batch is brought to one length, as HF's `padding=` argument.
enum class WhisperPadding {
  max_length,  // every clip padded to n_samples (HF default; what Whisper was trained on)
  longest,     // padded to the longest clip in the batch (after truncation, if enabled)
};

struct WhisperFeatures {
  at::Tensor input_features;  // float32 [B, n_mels, frames]
  at::Tensor attention_mask;  // int32 [B, frames], 1 for frames of real audio (HF's rescaled
                              // sample mask: every hop_length-th sample)
};

// The Slaney-style mel filter bank HF's mel_filter_bank(num_frequency_bins, num_mel_filters,
// min_frequency, max_frequency, sampling_rate, norm="slaney", mel_scale="slaney") returns,
// as float64 [num_frequency_bins, num_mel_filters].
at::Tensor slaney_mel_filter_bank(int num_frequency_bins, int num_mel_filters,
                                  double min_frequency, double max_frequency, int sampling_rate);

class WhisperFeatureExtractor {
 public:
  explicit WhisperFeatureExtractor(WhisperFeatureOptions options = {});
  explicit WhisperFeatureExtractor(const nlohmann::json& preprocessor_config);

  // [T] -> [n_mels, n_samples / hop_length]; [B, T] -> [B, n_mels, n_samples / hop_length].
  // Each row is padded with zeros or truncated to n_samples first (as HF with its defaults).
  at::Tensor operator()(const at::Tensor& wave) const;

  // Clips of unequal lengths -> one padded batch with HF's attention mask. `truncation` cuts
  // clips longer than n_samples (HF default); without it `padding` must be `longest`.
  WhisperFeatures operator()(const std::vector<at::Tensor>& waves,
                             WhisperPadding padding = WhisperPadding::max_length,
                             bool truncation = true) const;

  // The log-mel of already padded waveforms [B, L] (no padding or truncation):
  // [B, n_mels, L / hop_length].
  at::Tensor log_mel(const at::Tensor& padded_waves) const;

  const WhisperFeatureOptions& options() const { return options_; }
  const at::Tensor& mel_filters() const { return mel_filters_; }  // float32 [n_mels, n_freqs]
  int frames() const { return options_.n_samples / options_.hop_length; }

 private:
  // Two implementations of one method. The CPU kernel (src/audio/mel_kernel.h): float32 CPU
  // waveforms when no gradient is recorded. ATen operations: everything else (gradients
  // flow to the waveform; any device). Both equal HF within float32 rounding.
  bool uses_kernel(const at::Tensor& waves) const;
  at::Tensor kernel_log_mel(std::vector<detail::MelClip> clips, int64_t padded_length) const;
  // log_mel of rows [B, L] whose samples past `signal_length` are all padding.
  at::Tensor aten_log_mel(const at::Tensor& waves, int64_t signal_length) const;
  std::vector<detail::MelClip> rows_of(const at::Tensor& rows, int64_t signal_length) const;
  void check_stft_length(int64_t length) const;

  WhisperFeatureOptions options_;
  at::Tensor mel_filters_;
  at::Tensor window_;
  std::shared_ptr<const detail::MelPlan> plan_;  // null when the kernel cannot do n_fft
};

}  // namespace speechlens::audio
