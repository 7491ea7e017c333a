#include "speechlens/audio/log_mel.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <optional>
#include <nlohmann/json.hpp>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "mel_kernel.h"
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

// Bounds that keep a hostile preprocessor_config.json from allocating gigabytes before any
// audio arrives (the mel bank is n_freqs x n_mels doubles, a padded clip n_samples floats).
// Every Whisper-family front end in use sits far inside them (n_fft 400, 80/128 mels, 30 s).
constexpr int64_t kMaxFft = 8192;
constexpr int64_t kMaxMels = 1024;
constexpr int64_t kMaxSamplingRate = 1'000'000;
constexpr int64_t kMaxChunkSeconds = 600;
constexpr int64_t kMaxSamples = kMaxChunkSeconds * 48'000;

void check_range(const char* key, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    throw InvalidInput(fmt::format(
        "Whisper feature options: '{}' = {} is out of range; expected {} to {}", key, value, low,
        high));
  }
}

void check_options(const WhisperFeatureOptions& o) {
  check_range("feature_size", o.n_mels, 1, kMaxMels);
  check_range("sampling_rate", o.sampling_rate, 1, kMaxSamplingRate);
  check_range("n_fft", o.n_fft, 2, kMaxFft);
  check_range("hop_length", o.hop_length, 1, kMaxFft);
  check_range("n_samples", o.n_samples, o.hop_length,
              std::min<int64_t>(kMaxSamples, kMaxChunkSeconds * o.sampling_rate));
}

// A float32 CPU tensor for the kernel's output. Past 2 MB (a 30 s clip of 80 mels is 0.96 MB;
// batches reach tens of MB) the memory is 2 MB-aligned and advised for transparent huge
// pages, as numpy does for its arrays: first-touch page faults dominate writing a fresh
// output otherwise (64 one-second clips padded to 30 s: 61 MB, measured 200 ms of faults with
// 4 kB pages against 20 ms with huge pages on the build machine). Elsewhere: at::empty.
at::Tensor empty_output(at::IntArrayRef sizes) {
#if defined(__linux__)
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * sizeof(float);
  if (bytes >= kHugePage) {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* data = nullptr;
    if (posix_memalign(&data, kHugePage, rounded) == 0) {
      madvise(data, rounded, MADV_HUGEPAGE);  // advice only: failure leaves 4 kB pages
      return at::from_blob(data, sizes, [](void* p) { std::free(p); },
                           at::TensorOptions().dtype(at::kFloat));
    }
  }
#endif
  return at::empty(sizes, at::kFloat);
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
  // Integers are read as int64 and range-checked before anything is derived from them, so a
  // value past int's range is an error naming its key, never a wrapped int.
  auto read_int = [&](const char* key, int64_t low, int64_t high) -> std::optional<int64_t> {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) {
      throw InvalidInput(fmt::format("preprocessor config: '{}' must be an integer, got {}", key,
                                     it->dump()));
    }
    const int64_t value = it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX
                              ? INT64_MAX
                              : it->get<int64_t>();
    check_range(key, value, low, high);
    return value;
  };
  WhisperFeatureOptions options;
  if (auto v = read_int("feature_size", 1, kMaxMels)) options.n_mels = static_cast<int>(*v);
  if (auto v = read_int("sampling_rate", 1, kMaxSamplingRate)) {
    options.sampling_rate = static_cast<int>(*v);
  }
  if (auto v = read_int("n_fft", 2, kMaxFft)) options.n_fft = static_cast<int>(*v);
  if (auto v = read_int("hop_length", 1, kMaxFft)) options.hop_length = static_cast<int>(*v);
  // HF derives n_samples from chunk_length * sampling_rate in its constructor; the stored
  // n_samples key is informational, so chunk_length wins when both are present.
  if (!config.contains("chunk_length")) {
    if (auto v = read_int("n_samples", 1, kMaxSamples)) options.n_samples = static_cast<int>(*v);
  }
  if (auto v = read_int("chunk_length", 1, kMaxChunkSeconds)) {
    const int64_t n_samples = *v * options.sampling_rate;  // both bounded: no overflow
    if (n_samples > kMaxSamples) {
      throw InvalidInput(fmt::format(
          "preprocessor config: 'chunk_length' = {} s at 'sampling_rate' = {} Hz is {} samples "
          "per clip; expected at most {}",
          *v, options.sampling_rate, n_samples, kMaxSamples));
    }
    options.n_samples = static_cast<int>(n_samples);
  }
  if (const auto it = config.find("padding_value"); it != config.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>())) {
      throw InvalidInput(fmt::format(
          "preprocessor config: 'padding_value' must be a finite number, got {}", it->dump()));
    }
    options.padding_value = it->get<float>();
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
  const float* window = window_.data_ptr<float>();
  plan_ = detail::make_mel_plan(options_.n_fft, options_.hop_length,
                                mel_filters_.data_ptr<float>(), options_.n_mels,
                                std::vector<float>(window, window + options_.n_fft));
}

WhisperFeatureExtractor::WhisperFeatureExtractor(const nlohmann::json& preprocessor_config)
    : WhisperFeatureExtractor(WhisperFeatureOptions::from_json(preprocessor_config)) {}

bool WhisperFeatureExtractor::uses_kernel(const at::Tensor& waves) const {
  // The kernel has no autograd; a waveform that needs gradients takes the ATen path.
  return plan_ != nullptr && waves.device().is_cpu() && waves.scalar_type() == at::kFloat &&
         !(waves.requires_grad() && at::GradMode::is_enabled());
}

at::Tensor WhisperFeatureExtractor::log_mel(const at::Tensor& padded_waves) const {
  at::Tensor waves = as_float_wave(padded_waves, "WhisperFeatureExtractor::log_mel");
  if (waves.dim() != 2) {
    throw InvalidInput(fmt::format("log_mel expects padded waveforms [B, L], got {}",
                                   c10::str(waves.sizes())));
  }
  check_stft_length(waves.size(1));
  if (uses_kernel(waves)) {
    const at::Tensor rows = waves.contiguous();
    return kernel_log_mel(rows_of(rows, rows.size(1)), rows.size(1));
  }
  return aten_log_mel(waves, waves.size(1));
}

void WhisperFeatureExtractor::check_stft_length(int64_t length) const {
  const int64_t half = options_.n_fft / 2;
  if (length <= half) {
    throw InvalidInput(fmt::format(
        "log_mel needs more than n_fft / 2 = {} samples for the STFT's reflect padding, got {}",
        half, length));
  }
}

std::vector<detail::MelClip> WhisperFeatureExtractor::rows_of(const at::Tensor& rows,
                                                             int64_t signal_length) const {
  std::vector<detail::MelClip> clips(rows.size(0));
  for (int64_t b = 0; b < rows.size(0); ++b) {
    clips[b].data = rows.data_ptr<float>() + b * rows.stride(0);
    clips[b].length = signal_length;
  }
  return clips;
}

at::Tensor WhisperFeatureExtractor::kernel_log_mel(std::vector<detail::MelClip> clips,
                                                   int64_t padded_length) const {
  const detail::MelKernel& kernel = detail::mel_kernel();
  const detail::MelPlan& plan = *plan_;
  const int64_t half = options_.n_fft / 2;
  const int64_t hop = options_.hop_length;
  const int64_t frames = padded_length / hop;
  const int64_t n_mels = options_.n_mels;
  const auto batch = static_cast<int64_t>(clips.size());
  constexpr float kLogFloor = -10.0f;  // log10(max(0, 1e-10)), as HF's float32 log10 gives

  // Frames that lie wholly in zero padding have an all-zero spectrum: their value is the floor
  // and their FFT is skipped (a 1 s clip padded to 30 s needs 3% of the work). The reflected
  // tail must be padding too, hence the bound on the length.
  std::vector<int64_t> active(batch), first_chunk(batch + 1, 0);
  const int64_t chunk = static_cast<int64_t>(kernel.lanes) * 8;
  for (int64_t b = 0; b < batch; ++b) {
    clips[b].padded_length = padded_length;
    clips[b].pad_value = options_.padding_value;
    active[b] = frames;
    if (options_.padding_value == 0.0f && clips[b].length <= padded_length - 1 - half) {
      active[b] = std::min(frames, (clips[b].length + half + hop - 1) / hop);
    }
    first_chunk[b + 1] = first_chunk[b] + (active[b] + chunk - 1) / chunk;
  }

  at::Tensor out = empty_output({batch, n_mels, frames});
  float* data = out.data_ptr<float>();
  std::vector<float> chunk_peak(first_chunk[batch], -INFINITY);
  at::parallel_for(0, first_chunk[batch], 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const int64_t b =
          std::upper_bound(first_chunk.begin(), first_chunk.end(), c) - first_chunk.begin() - 1;
      const int64_t begin = (c - first_chunk[b]) * chunk;
      const int64_t end = std::min(active[b], begin + chunk);
      chunk_peak[c] = kernel.frames(plan, clips[b], begin, end, data + b * n_mels * frames,
                                    frames);
    }
  });

  // The 80 dB dynamic-range floor per utterance (as HF per example), then (x + 4) / 4, in the
  // same float32 operations as HF.
  std::vector<float> floor(batch);
  for (int64_t b = 0; b < batch; ++b) {
    float peak = active[b] < frames ? kLogFloor : -INFINITY;
    for (int64_t c = first_chunk[b]; c < first_chunk[b + 1]; ++c) {
      peak = std::max(peak, chunk_peak[c]);
    }
    floor[b] = peak - 8.0f;
  }
  at::parallel_for(0, batch * n_mels, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / n_mels;
      const float low = floor[b];
      float* values = data + row * frames;
      for (int64_t f = 0; f < active[b]; ++f) {
        values[f] = (std::max(values[f], low) + 4.0f) / 4.0f;
      }
      const float padding = (std::max(kLogFloor, low) + 4.0f) / 4.0f;
      std::fill(values + active[b], values + frames, padding);
    }
  });
  return out;
}

at::Tensor WhisperFeatureExtractor::aten_log_mel(const at::Tensor& waves,
                                                 int64_t signal_length) const {
  // Out-of-place ATen operations only: differentiable with respect to `waves`, and device
  // agnostic (constants follow the input's device).
  const int64_t length = waves.size(1);
  const int64_t half = options_.n_fft / 2;
  check_stft_length(length);
  // The STFT (center=True) has length / hop + 1 frames; Whisper drops the last one.
  const int64_t frames = length / options_.hop_length;
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
  // re^2 + im^2 differs from HF's abs()**2 only in the last float32 bit, with the same
  // gradient (2 re, 2 im; zero at zero).
  const at::Tensor power = at::real(spectrum).square() + at::imag(spectrum).square();
  // [B, active, n_freqs] x [n_freqs, n_mels]
  const at::Tensor mel = at::matmul(power, mel_filters_.to(waves.device()).t());
  at::Tensor log_spec = mel.clamp_min(1e-10).log10().transpose(1, 2);
  if (active < frames) {
    log_spec = at::cat({log_spec, at::full({waves.size(0), options_.n_mels, frames - active},
                                           std::log10(1e-10), waves.options())},
                       2);
  }
  // The 80 dB dynamic-range floor is per utterance, as HF applies it per example; amax's
  // gradient splits evenly between tied maxima, as torch's max() over all elements does.
  const at::Tensor peak = log_spec.amax({1, 2}, /*keepdim=*/true);
  log_spec = at::maximum(log_spec, peak - 8.0);
  return (log_spec + 4.0) / 4.0;
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
  at::Tensor features;
  if (uses_kernel(rows)) {
    // No padded copy: the kernel reads each row up to signal_length and pads on the fly.
    if (rows.stride(1) != 1) rows = rows.contiguous();
    features = kernel_log_mel(rows_of(rows, signal_length), n_samples);
  } else {
    if (rows.size(1) >= n_samples) {
      rows = rows.narrow(1, 0, n_samples);
    } else {
      rows = at::constant_pad_nd(rows, {0, n_samples - rows.size(1)}, options_.padding_value);
    }
    features = aten_log_mel(rows, signal_length);
  }
  return batched ? features : features.squeeze(0);
}

WhisperFeatures WhisperFeatureExtractor::operator()(const std::vector<at::Tensor>& waves,
                                                    WhisperPadding padding,
                                                    bool truncation) const {
  if (waves.empty()) throw InvalidInput("WhisperFeatureExtractor: the batch is empty");
  std::vector<at::Tensor> clips;
  clips.reserve(waves.size());
  int64_t longest = 0;
  bool kernel = true;
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
    kernel = kernel && uses_kernel(clip) && clip.device() == waves.front().device();
    clips.push_back(clip.contiguous());
  }
  const int64_t target = padding == WhisperPadding::max_length ? options_.n_samples : longest;
  if (longest > target) {
    throw InvalidInput(fmt::format(
        "WhisperFeatureExtractor: a clip has {} samples, more than max_length {}; enable "
        "truncation or use padding=longest",
        longest, target));
  }
  check_stft_length(target);

  const auto batch = static_cast<int64_t>(clips.size());
  std::vector<int64_t> lengths(batch);
  for (int64_t b = 0; b < batch; ++b) lengths[b] = clips[b].size(0);
  WhisperFeatures result;
  if (kernel) {
    std::vector<detail::MelClip> views(batch);
    for (int64_t b = 0; b < batch; ++b) {
      views[b].data = clips[b].data_ptr<float>();
      views[b].length = lengths[b];
    }
    result.input_features = kernel_log_mel(std::move(views), target);
  } else {
    // Padding by copies into slices keeps the autograd graph to every clip.
    at::Tensor padded = at::full({batch, target}, options_.padding_value,
                                 clips.front().options().requires_grad(false));
    for (int64_t b = 0; b < batch; ++b) padded[b].narrow(0, 0, lengths[b]).copy_(clips[b]);
    result.input_features = aten_log_mel(padded, longest);
  }
  // HF keeps every hop_length-th entry of the sample mask, minus the dropped last frame:
  // frame f is real audio iff sample f * hop_length is.
  const int64_t frames = result.input_features.size(2);
  const auto device = result.input_features.device();
  const at::Tensor frame_start =
      at::arange(frames, at::TensorOptions().dtype(at::kLong).device(device))
          .mul(options_.hop_length);
  const at::Tensor length_tensor = at::tensor(lengths, at::kLong).to(device);
  result.attention_mask = frame_start.unsqueeze(0).lt(length_tensor.unsqueeze(1)).to(at::kInt);
  return result;
}

}  // namespace speechlens::audio
