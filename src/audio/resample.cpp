#include "speechlens/audio/resample.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <numeric>

#include "speechlens/util/error.h"

namespace speechlens::audio {
namespace {

struct PolyphaseKernel {
  at::Tensor weights;  // [up, 1, 2 * width + down]
  int64_t width = 0;   // input samples of context on the left
};

// One windowed-sinc kernel per output phase, computed in float64 for accuracy and cast to
// the signal's dtype.
PolyphaseKernel make_kernel(int64_t down, int64_t up, const ResampleOptions& options,
                            const at::TensorOptions& target) {
  const double cutoff = static_cast<double>(std::min(down, up)) * options.rolloff;
  const double zero_crossings = options.lowpass_filter_width;
  const int64_t width =
      static_cast<int64_t>(std::ceil(zero_crossings * static_cast<double>(down) / cutoff));

  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  // Input tap offsets (in input periods) and output phase offsets (in output periods).
  const at::Tensor taps = at::arange(-width, width + down, f64).div(static_cast<double>(down));
  const at::Tensor phases = at::arange(0, -up, -1, f64).div(static_cast<double>(up));
  at::Tensor t = (phases.unsqueeze(1) + taps.unsqueeze(0)).mul(cutoff);
  t.clamp_(-zero_crossings, zero_crossings);

  at::Tensor window;
  if (options.window == ResampleWindow::hann) {
    window = at::cos(t.mul(M_PI / zero_crossings / 2.0)).pow(2);
  } else {
    const at::Tensor beta = at::scalar_tensor(options.beta, f64);
    window = at::i0(beta * at::sqrt((1.0 - (t / zero_crossings).pow(2)).clamp_min(0.0))) /
             at::i0(beta);
  }
  const at::Tensor angle = t.mul(M_PI);
  const at::Tensor sinc = at::where(angle == 0, at::ones_like(angle), at::sin(angle) / angle);
  const double gain = cutoff / static_cast<double>(down);
  at::Tensor weights = (sinc * window).mul(gain).unsqueeze(1).to(target);
  return {weights, width};
}

void check_arguments(const at::Tensor& wave, int from_rate, int to_rate,
                     const ResampleOptions& options) {
  if (!wave.defined() || (wave.dim() != 1 && wave.dim() != 2)) {
    throw InvalidInput(fmt::format("resample expects a waveform of shape [T] or [B, T], got {}",
                                   wave.defined() ? c10::str(wave.sizes()) : "undefined"));
  }
  if (!wave.is_floating_point()) {
    throw InvalidInput(fmt::format("resample expects a floating-point waveform, got {}",
                                   c10::toString(wave.scalar_type())));
  }
  if (from_rate <= 0 || to_rate <= 0) {
    throw InvalidInput(fmt::format("resample: sample rates must be positive, got {} -> {}",
                                   from_rate, to_rate));
  }
  if (options.lowpass_filter_width < 1 || !(options.rolloff > 0.0 && options.rolloff <= 1.0) ||
      !(options.beta >= 0.0)) {
    throw InvalidInput(fmt::format(
        "resample: lowpass_filter_width must be >= 1, rolloff in (0, 1] and beta >= 0; got "
        "{}, {}, {}",
        options.lowpass_filter_width, options.rolloff, options.beta));
  }
}

}  // namespace

at::Tensor resample(const at::Tensor& wave, int from_rate, int to_rate,
                    const ResampleOptions& options) {
  check_arguments(wave, from_rate, to_rate, options);
  if (from_rate == to_rate) return wave;

  const int64_t divisor = std::gcd(from_rate, to_rate);
  const int64_t down = from_rate / divisor;
  const int64_t up = to_rate / divisor;

  const bool batched = wave.dim() == 2;
  const at::Tensor rows = batched ? wave : wave.unsqueeze(0);
  const int64_t length = rows.size(1);
  // ceil(length * up / down) in integers: exact for any length.
  const int64_t out_length = (length * up + down - 1) / down;
  if (length == 0) return at::empty(batched ? std::vector<int64_t>{rows.size(0), 0} : std::vector<int64_t>{0}, wave.options());

  const PolyphaseKernel kernel = make_kernel(down, up, options, wave.options());
  // Enough right padding that the last output phase has a full window.
  const at::Tensor padded =
      at::constant_pad_nd(rows.unsqueeze(1), {kernel.width, kernel.width + down}, 0.0);
  // [B, up, n_blocks]: phase p of block j is output sample j * up + p.
  const at::Tensor phases = at::conv1d(padded, kernel.weights, /*bias=*/{}, /*stride=*/down);
  at::Tensor out = phases.transpose(1, 2).reshape({rows.size(0), -1}).narrow(1, 0, out_length);
  out = out.contiguous();
  return batched ? out : out.squeeze(0);
}

}  // namespace speechlens::audio
