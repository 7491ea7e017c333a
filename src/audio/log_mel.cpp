#include "speechlens/audio/log_mel.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace speechlens::audio {
namespace {

// The Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False).
constexpr double kMinLogHertz = 1000.0;
constexpr double kMinLogMel = 15.0;

double hertz_to_slaney_mel(double hertz) {
  const double log_step = 27.0 / std::log(6.4);
  if (hertz >= kMinLogHertz) return kMinLogMel + std::log(hertz / kMinLogHertz) * log_step;
  return 3.0 * hertz / 200.0;
}

double slaney_mel_to_hertz(double mel) {
  const double log_step = std::log(6.4) / 27.0;
  if (mel >= kMinLogMel) return kMinLogHertz * std::exp(log_step * (mel - kMinLogMel));
  return 200.0 * mel / 3.0;
}

// numpy.linspace's arithmetic (start + i * step, last point exactly `stop`), so that the
// filter edges agree with HF's to the last bit.
std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> values(num);
  const double step = num > 1 ? (stop - start) / (num - 1) : 0.0;
  for (int i = 0; i < num; ++i) values[i] = static_cast<double>(i) * step + start;
  if (num > 1) values[num - 1] = stop;
  return values;
}

void check_options(const WhisperFeatureOptions& o) {
  if (o.n_mels < 1 || o.sampling_rate < 1 || o.n_fft < 2 || o.hop_length < 1 ||
      o.n_samples < o.hop_length) {
    throw InvalidInput(fmt::format(
        "invalid Whisper feature options: n_mels={}, sampling_rate={}, n_fft={}, hop_length={}, "
        "n_samples={} (all must be positive, n_fft >= 2 and n_samples >= hop_length)",
        o.n_mels, o.sampling_rate, o.n_fft, o.hop_length, o.n_samples));
  }
}

at::Tensor as_float_wave(const at::Tensor& wave, const char* what) {
  if (!wave.defined()) throw InvalidInput(fmt::format("{}: the waveform is undefined", what));
  if (!wave.is_floating_point()) {
    throw InvalidInput(fmt::format("{}: expects a floating-point waveform, got {}", what,
                                   c10::toString(wave.scalar_type())));
  }
  return wave.to(at::kFloat);
}

}  // namespace

WhisperFeatureOptions WhisperFeatureOptions::from_json(const nlohmann::json& config) {
  if (!config.is_object()) {
    throw InvalidInput("Whisper preprocessor config must be a JSON object");
  }
  WhisperFeatureOptions options;
  auto read_int = [&](const char* key, int& field) {
    if (!config.contains(key) || config[key].is_null()) return;
    if (!config[key].is_number_integer()) {
      throw InvalidInput(fmt::format("preprocessor config: '{}' must be an integer, got {}", key,
                                     config[key].dump()));
    }
    field = config[key].get<int>();
  };
  read_int("feature_size", options.n_mels);
  read_int("sampling_rate", options.sampling_rate);
  read_int("n_fft", options.n_fft);
  read_int("hop_length", options.hop_length);
  // HF derives n_samples from chunk_length * sampling_rate in its constructor; the stored
  // n_samples key is informational, so chunk_length wins when both are present.
  read_int("n_samples", options.n_samples);
  if (config.contains("chunk_length") && config["chunk_length"].is_number()) {
    options.n_samples = config["chunk_length"].get<int>() * options.sampling_rate;
  }
  if (config.contains("padding_value") && config["padding_value"].is_number()) {
    options.padding_value = config["padding_value"].get<float>();
  }
  check_options(options);
  return options;
}

at::Tensor slaney_mel_filter_bank(int num_frequency_bins, int num_mel_filters,
                                  double min_frequency, double max_frequency, int sampling_rate) {
  if (num_frequency_bins < 2 || num_mel_filters < 1 || min_frequency > max_frequency) {
    throw InvalidInput(fmt::format(
        "mel filter bank: need num_frequency_bins >= 2, num_mel_filters >= 1 and min <= max "
        "frequency; got {}, {}, {}..{} Hz",
        num_frequency_bins, num_mel_filters, min_frequency, max_frequency));
  }
  const std::vector<double> mel_points =
      linspace(hertz_to_slaney_mel(min_frequency), hertz_to_slaney_mel(max_frequency),
               num_mel_filters + 2);
  std::vector<double> edges(mel_points.size());
  std::transform(mel_points.begin(), mel_points.end(), edges.begin(), slaney_mel_to_hertz);
  // HF spaces the FFT bins up to sampling_rate // 2 (integer division).
  const std::vector<double> bin_hertz =
      linspace(0.0, static_cast<double>(sampling_rate / 2), num_frequency_bins);

  at::Tensor bank = at::zeros({num_frequency_bins, num_mel_filters}, at::kDouble);
  auto out = bank.accessor<double, 2>();
  for (int m = 0; m < num_mel_filters; ++m) {
    const double lower = edges[m], center = edges[m + 1], upper = edges[m + 2];
    const double area_norm = 2.0 / (upper - lower);
    for (int k = 0; k < num_frequency_bins; ++k) {
      const double rising = -(lower - bin_hertz[k]) / (center - lower);
      const double falling = (upper - bin_hertz[k]) / (upper - center);
      out[k][m] = std::max(0.0, std::min(rising, falling)) * area_norm;
    }
  }
  return bank;
}

WhisperFeatureExtractor::WhisperFeatureExtractor(WhisperFeatureOptions options)
    : options_(options) {
  check_options(options_);
  mel_filters_ = slaney_mel_filter_bank(1 + options_.n_fft / 2, options_.n_mels, 0.0, 8000.0,
                                        options_.sampling_rate)
                     .to(at::kFloat)
                     .t()
                     .contiguous();
  window_ = at::hann_window(options_.n_fft, /*periodic=*/true, at::kFloat);
}

WhisperFeatureExtractor::WhisperFeatureExtractor(const nlohmann::json& preprocessor_config)
    : WhisperFeatureExtractor(WhisperFeatureOptions::from_json(preprocessor_config)) {}

at::Tensor WhisperFeatureExtractor::log_mel(const at::Tensor& padded_waves) const {
  at::Tensor waves = as_float_wave(padded_waves, "WhisperFeatureExtractor::log_mel");
  if (waves.dim() != 2) {
    throw InvalidInput(fmt::format("log_mel expects padded waveforms [B, L], got {}",
                                   c10::str(waves.sizes())));
  }
  return log_mel_of_signal_prefix(waves, waves.size(1));
}

at::Tensor WhisperFeatureExtractor::log_mel_of_signal_prefix(const at::Tensor& waves,
                                                             int64_t signal_length) const {
  const int64_t length = waves.size(1);
  const int64_t half = options_.n_fft / 2;
  if (length <= half) {
    throw InvalidInput(fmt::format(
        "log_mel needs more than n_fft / 2 = {} samples for the STFT's reflect padding, got {}",
        half, length));
  }
  // The STFT (center=True) has length / hop + 1 frames; Whisper drops the last one.
  const int64_t frames = length / options_.hop_length;
  // Frames that start past the signal see only zero padding, whose spectrum is exactly zero;
  // skipping their FFTs changes no bit of the result (a 1 s clip needs 3% of the work). The
  // reflected tail must also be zeros, hence the bound on signal_length.
  int64_t active = frames;
  if (options_.padding_value == 0.0f && signal_length <= length - 1 - half) {
    active = std::min(frames, (signal_length + half + options_.hop_length - 1) /
                                  options_.hop_length);
  }

  // The STFT by hand (reflect pad, frame, window, real FFT): identical arithmetic to
  // at::stft(center=true), but it lets the all-zero frames be skipped.
  const at::Tensor padded =
      at::reflection_pad1d(waves.unsqueeze(1), {half, half}).squeeze(1);
  const at::Tensor windowed =
      padded.unfold(1, options_.n_fft, options_.hop_length).narrow(1, 0, active) *
      window_.to(waves.device());
  const at::Tensor spectrum = at::fft_rfft(windowed, options_.n_fft, -1);
  // re^2 + im^2 on the complex views is several times faster than |X|^2 or a reduction over
  // view_as_real, and differs from HF's abs()**2 only in the last float32 bit.
  const at::Tensor power = at::real(spectrum).square().add_(at::imag(spectrum).square());
  // [B, active, n_freqs] x [n_freqs, n_mels]
  const at::Tensor mel = at::matmul(power, mel_filters_.to(waves.device()).t());
  const at::Tensor active_log = mel.clamp_min_(1e-10).log10_().transpose(1, 2);

  at::Tensor log_spec = at::full({waves.size(0), options_.n_mels, frames}, std::log10(1e-10),
                                 waves.options());
  log_spec.narrow(2, 0, active).copy_(active_log);
  // The 80 dB dynamic-range floor is per utterance, as HF applies it per example.
  const at::Tensor peak = log_spec.amax({1, 2}, /*keepdim=*/true);
  log_spec = at::maximum(log_spec, peak - 8.0);
  return log_spec.add_(4.0).div_(4.0);
}

at::Tensor WhisperFeatureExtractor::operator()(const at::Tensor& wave) const {
  at::Tensor waves = as_float_wave(wave, "WhisperFeatureExtractor");
  if (waves.dim() != 1 && waves.dim() != 2) {
    throw InvalidInput(fmt::format(
        "WhisperFeatureExtractor expects a waveform [T] or a batch [B, T], got {}",
        c10::str(waves.sizes())));
  }
  const bool batched = waves.dim() == 2;
  at::Tensor rows = batched ? waves : waves.unsqueeze(0);
  if (rows.size(1) == 0) throw InvalidInput("WhisperFeatureExtractor: the waveform is empty");
  const int64_t n_samples = options_.n_samples;
  const int64_t signal_length = std::min(rows.size(1), n_samples);
  if (rows.size(1) >= n_samples) {
    rows = rows.narrow(1, 0, n_samples);
  } else {
    rows = at::constant_pad_nd(rows, {0, n_samples - rows.size(1)}, options_.padding_value);
  }
  at::Tensor features = log_mel_of_signal_prefix(rows, signal_length);
  return batched ? features : features.squeeze(0);
}

WhisperFeatures WhisperFeatureExtractor::operator()(const std::vector<at::Tensor>& waves,
                                                    WhisperPadding padding,
                                                    bool truncation) const {
  if (waves.empty()) throw InvalidInput("WhisperFeatureExtractor: the batch is empty");
  std::vector<at::Tensor> clips;
  clips.reserve(waves.size());
  int64_t longest = 0;
  for (size_t i = 0; i < waves.size(); ++i) {
    at::Tensor clip = as_float_wave(waves[i], "WhisperFeatureExtractor");
    if (clip.dim() != 1 || clip.size(0) == 0) {
      throw InvalidInput(fmt::format(
          "WhisperFeatureExtractor: batch item {} must be a non-empty 1-D waveform, got shape {}",
          i, c10::str(clip.sizes())));
    }
    if (truncation && clip.size(0) > options_.n_samples) {
      clip = clip.narrow(0, 0, options_.n_samples);
    }
    longest = std::max(longest, clip.size(0));
    clips.push_back(clip);
  }
  const int64_t target = padding == WhisperPadding::max_length ? options_.n_samples : longest;
  if (longest > target) {
    throw InvalidInput(fmt::format(
        "WhisperFeatureExtractor: a clip has {} samples, more than max_length {}; enable "
        "truncation or use padding=longest",
        longest, target));
  }

  const auto batch = static_cast<int64_t>(clips.size());
  at::Tensor padded = at::full({batch, target}, options_.padding_value,
                               clips.front().options());
  at::Tensor lengths = at::empty({batch}, at::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    padded[b].narrow(0, 0, clips[b].size(0)).copy_(clips[b]);
    lengths[b] = clips[b].size(0);
  }
  WhisperFeatures result;
  result.input_features = log_mel_of_signal_prefix(padded, longest);
  // HF keeps every hop_length-th entry of the sample mask, minus the dropped last frame:
  // frame f is real audio iff sample f * hop_length is.
  const int64_t frames = result.input_features.size(2);
  const at::Tensor frame_start = at::arange(frames, at::kLong).mul(options_.hop_length);
  result.attention_mask = frame_start.unsqueeze(0).lt(lengths.unsqueeze(1)).to(at::kInt);
  return result;
}

}  // namespace speechlens::audio
