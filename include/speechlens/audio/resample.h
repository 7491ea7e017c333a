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

namespace speechlens::audio {

enum class ResampleWindow { kaiser, hann };

struct ResampleOptions {
  int lowpass_filter_width = 24;  // zero crossings of the sinc on each side
  double rolloff = 0.945;         // cutoff as a fraction of the lower Nyquist frequency
  ResampleWindow window = ResampleWindow::kaiser;
  double beta = 12.0;             // Kaiser window shape (ignored for hann)
};

// `wave`: floating-point [T] or [B, T] on any device; the result keeps its dtype, device and
// leading shape. from_rate == to_rate returns `wave` unchanged.
at::Tensor resample(const at::Tensor& wave, int from_rate, int to_rate,
                    const ResampleOptions& options = {});

}  // namespace speechlens::audio
