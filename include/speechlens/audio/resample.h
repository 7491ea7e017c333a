#pragma once
// Band-limited resampling by windowed-sinc polyphase filtering (the method of torchaudio's
// `resample`, sinc_interp_kaiser / sinc_interp_hann): the rates are reduced by their gcd to
// up/down factors, one sinc kernel per output phase is windowed to `lowpass_filter_width`
// zero crossings, and a strided conv1d applies all phases at once. The cutoff is
// `rolloff * min(from, to) / 2`, so content above the lower Nyquist frequency is removed
// before it can alias. Output sample k sits at time k / to_rate (no delay); the output has
// ceil(T * to_rate / from_rate) samples. Edges are zero-padded.
// Measured error against scipy.signal.resample_poly and against exact band-limited signals:
// docs/audio.md.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace speechlens::audio {

enum class ResampleWindow { kaiser, hann };

struct ResampleOptions {
  int lowpass_filter_width = 24;  // zero crossings of the sinc on each side
  double rolloff = 0.945;         // cutoff as a fraction of the lower Nyquist frequency
  ResampleWindow window = ResampleWindow::kaiser;
  double beta = 12.0;             // Kaiser window shape (ignored for hann)
};

// Supported sample rates (InvalidInput outside them, before anything is allocated).
inline constexpr int kMinSampleRate = 1000;
inline constexpr int kMaxSampleRate = 1'000'000;
// The kernel holds up * (2 * width + down) taps (built in float64); the exact ratio of two
// rates with large coprime factors would need billions (44101 -> 16000: 708 million, 5.7 GB).
// Past this bound the ratio is approximated by the closest up / down whose kernel fits, and
// refused when that is more than kMaxRateError off (relative). Exact ratios are kept for
// every pair of the usual rates (8, 11.025, 12, 16, 22.05, 24, 32, 37.8, 44.1, 48, 64, 88.2,
// 96, 176.4, 192, 384 kHz) and for any multiple of 50 Hz up to 384 kHz to or from 16 kHz.
inline constexpr int64_t kMaxResampleKernel = int64_t{1} << 22;
inline constexpr double kMaxRateError = 1e-4;

struct ResamplePlan {
  int64_t up = 1;           // output phases
  int64_t down = 1;         // input stride
  double rate_error = 0.0;  // |up / down / (to / from) - 1|; 0 when the ratio is exact
};

// The polyphase factors resample() uses for these rates (throws InvalidInput for rates outside
// [kMinSampleRate, kMaxSampleRate] or a ratio that cannot be approximated within
// kMaxRateError).
ResamplePlan plan_resample(int from_rate, int to_rate, const ResampleOptions& options = {});

// `wave`: floating-point [T] or [B, T] on any device; the result keeps its dtype, device and
// leading shape. from_rate == to_rate returns `wave` unchanged. Differentiable with respect
// to `wave` (out-of-place ATen operations).
at::Tensor resample(const at::Tensor& wave, int from_rate, int to_rate,
                    const ResampleOptions& options = {});

}  // namespace speechlens::audio
