#include "speechlens/audio/resample.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "speechlens/util/error.h"

namespace speechlens::audio {
namespace {

// Input samples of context on each side of an output sample for a polyphase kernel with `up`
// phases and stride `down` (zero crossings of the sinc scaled to the lower rate).
int64_t kernel_width(int64_t down, int64_t up, const ResampleOptions& options) {
  const double cutoff = static_cast<double>(std::min(down, up)) * options.rolloff;
  return static_cast<int64_t>(
      std::ceil(options.lowpass_filter_width * static_cast<double>(down) / cutoff));
}

// Elements of the kernel [up, 2 * width + down]; the plan keeps it under kMaxKernelElements.
int64_t kernel_elements(int64_t down, int64_t up, const ResampleOptions& options) {
  return up * (2 * kernel_width(down, up, options) + down);
}

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
  const int64_t width = kernel_width(down, up, options);

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
  if (options.lowpass_filter_width < 1 || options.lowpass_filter_width > 1024 ||
      !(options.rolloff >= 0.01 && options.rolloff <= 1.0) ||
      !(options.beta >= 0.0 && options.beta <= 100.0)) {
    throw InvalidInput(fmt::format(
        "resample: lowpass_filter_width must be in [1, 1024], rolloff in [0.01, 1] and beta in "
        "[0, 100]; got {}, {}, {}",
        options.lowpass_filter_width, options.rolloff, options.beta));
  }
}

}  // namespace

ResamplePlan plan_resample(int from_rate, int to_rate, const ResampleOptions& options) {
  for (const auto& [name, rate] : {std::pair{"from_rate", from_rate}, {"to_rate", to_rate}}) {
    if (rate < kMinSampleRate || rate > kMaxSampleRate) {
      throw InvalidInput(fmt::format(
          "resample: {} = {} Hz is outside the supported sample rates, {} to {} Hz", name, rate,
          kMinSampleRate, kMaxSampleRate));
    }
  }
  const int64_t divisor = std::gcd(from_rate, to_rate);
  ResamplePlan plan;
  plan.down = from_rate / divisor;
  plan.up = to_rate / divisor;
  if (kernel_elements(plan.down, plan.up, options) <= kMaxResampleKernel) return plan;

  // The exact ratio needs too large a kernel (rates with large coprime factors, e.g. 44101 ->
  // 16000 has 16000 phases of 44241 taps). Take the closest ratio up / down whose kernel fits:
  // the best such approximations are convergents and semiconvergents of the continued
  // fraction of to / from.
  const double exact = static_cast<double>(to_rate) / from_rate;
  auto error = [&](int64_t up, int64_t down) {
    return std::abs(static_cast<double>(up) / static_cast<double>(down) / exact - 1.0);
  };
  int64_t a = to_rate, b = from_rate;
  int64_t h2 = 0, h1 = 1, k2 = 1, k1 = 0;  // convergents h / k
  double best = INFINITY;
  while (b != 0) {
    const int64_t q = a / b;
    // The largest t <= q whose semiconvergent fits (kernels grow with t).
    int64_t fitting = 0;
    for (int64_t lo = 1, hi = q; lo <= hi;) {
      const int64_t t = lo + (hi - lo) / 2;
      const int64_t h = t * h1 + h2, k = t * k1 + k2;
      if (h > 0 && k > 0 && kernel_elements(k, h, options) <= kMaxResampleKernel) {
        fitting = t;
        lo = t + 1;
      } else {
        hi = t - 1;
      }
    }
    if (fitting > 0) {
      const int64_t h = fitting * h1 + h2, k = fitting * k1 + k2;
      if (error(h, k) < best) {
        best = error(h, k);
        plan.up = h;
        plan.down = k;
      }
    }
    if (q > 0 && fitting < q) break;  // the next convergents are larger still
    const int64_t h = q * h1 + h2, k = q * k1 + k2;
    h2 = h1;
    h1 = h;
    k2 = k1;
    k1 = k;
    const int64_t r = a - q * b;
    a = b;
    b = r;
  }
  plan.rate_error = best;
  if (!(best <= kMaxRateError)) {
    throw InvalidInput(fmt::format(
        "resample: {} -> {} Hz needs a kernel of {} taps, and no ratio with a kernel under {} "
        "taps is within {} of it (best: {} / {}, relative error {:.3g}); resample with another "
        "tool first",
        from_rate, to_rate,
        kernel_elements(from_rate / divisor, to_rate / divisor, options), kMaxResampleKernel,
        kMaxRateError, plan.up, plan.down, best));
  }
  return plan;
}

at::Tensor resample(const at::Tensor& wave, int from_rate, int to_rate,
                    const ResampleOptions& options) {
  check_arguments(wave, from_rate, to_rate, options);
  const ResamplePlan plan = plan_resample(from_rate, to_rate, options);
  if (from_rate == to_rate) return wave;
  const int64_t down = plan.down;
  const int64_t up = plan.up;

  const bool batched = wave.dim() == 2;
  const at::Tensor rows = batched ? wave : wave.unsqueeze(0);
  const int64_t length = rows.size(1);
  // ceil(length * to / from) in integers (the true rates, also when the ratio is
  // approximated): exact for any length.
  const int64_t out_length = (length * to_rate + from_rate - 1) / from_rate;
  if (length == 0) {
    return at::empty(batched ? std::vector<int64_t>{rows.size(0), 0} : std::vector<int64_t>{0},
                     wave.options());
  }

  const PolyphaseKernel kernel = make_kernel(down, up, options, wave.options());
  // Right padding so that the conv yields ceil(out_length / up) blocks of `up` outputs, each
  // with a full window (at least width + down, as for the exact ratio).
  const int64_t blocks = (out_length + up - 1) / up;
  const int64_t taps = kernel.weights.size(2);
  const int64_t right = std::max(kernel.width + down, (blocks - 1) * down + taps - length -
                                                          kernel.width);
  // Out-of-place ATen operations: differentiable with respect to `wave`, on any device.
  const at::Tensor padded = at::constant_pad_nd(rows.unsqueeze(1), {kernel.width, right}, 0.0);
  // [B, up, n_blocks]: phase p of block j is output sample j * up + p.
  const at::Tensor phases = at::conv1d(padded, kernel.weights, /*bias=*/{}, /*stride=*/down);
  at::Tensor out = phases.transpose(1, 2).reshape({rows.size(0), -1}).narrow(1, 0, out_length);
  out = out.contiguous();
  return batched ? out : out.squeeze(0);
}

}  // namespace speechlens::audio
