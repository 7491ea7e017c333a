// The log-mel kernel's plan (FFT factorisation, twiddles, sparse filters) and the run-time
// choice of the kernel's ISA. The kernel itself: mel_kernel_impl.h.
#include "mel_kernel.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace speechlens::audio::detail {
namespace {

// Stage radices of a size-m complex FFT: 4s, then 5s, 2s and 3s (200 = 4 5 5 2, the fastest
// order measured for Whisper's n_fft of 400); empty if m has another prime factor.
std::vector<int> factor(int m) {
  std::vector<int> radices;
  for (int r : {4, 5, 2, 3}) {
    while (m % r == 0) {
      radices.push_back(r);
      m /= r;
    }
  }
  if (m != 1) return {};
  return radices;
}

bool cpu_has_avx2() {
#if defined(SPEECHLENS_MEL_X86)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(SPEECHLENS_MEL_X86)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

}  // namespace

std::shared_ptr<const MelPlan> make_mel_plan(int n_fft, int hop, const float* filters,
                                             int n_mels, const std::vector<float>& window) {
  if (n_fft < 4 || n_fft % 2 != 0 || hop < 1 || n_mels < 1 ||
      window.size() != static_cast<size_t>(n_fft)) {
    return nullptr;
  }
  auto plan = std::make_shared<MelPlan>();
  plan->n_fft = n_fft;
  plan->hop = hop;
  plan->n_mels = n_mels;
  plan->m = n_fft / 2;
  plan->n_freqs = plan->m + 1;
  plan->window = window;
  plan->radices = factor(plan->m);
  if (plan->radices.empty() && plan->m != 1) return nullptr;

  int n = plan->m;
  for (int r : plan->radices) {
    plan->twiddle_offset.push_back(static_cast<int>(plan->twiddle_re.size()));
    for (int p = 0; p < n / r; ++p) {
      for (int k = 1; k < r; ++k) {
        const double angle = -2.0 * M_PI * static_cast<double>(p) * k / n;
        plan->twiddle_re.push_back(static_cast<float>(std::cos(angle)));
        plan->twiddle_im.push_back(static_cast<float>(std::sin(angle)));
      }
    }
    n /= r;
  }
  for (int k = 0; k <= plan->m; ++k) {
    const double angle = -2.0 * M_PI * k / n_fft;
    plan->split_re.push_back(static_cast<float>(std::cos(angle)));
    plan->split_im.push_back(static_cast<float>(std::sin(angle)));
  }
  for (int mel = 0; mel < n_mels; ++mel) {
    const float* row = filters + static_cast<int64_t>(mel) * plan->n_freqs;
    int begin = 0, end = 0;
    for (int k = 0; k < plan->n_freqs; ++k) {
      if (row[k] != 0.0f) {
        if (end == 0) begin = k;
        end = k + 1;
      }
    }
    plan->mel_begin.push_back(begin);
    plan->mel_end.push_back(end);
    plan->mel_offset.push_back(static_cast<int>(plan->mel_weights.size()));
    plan->mel_weights.insert(plan->mel_weights.end(), row + begin, row + end);
  }
  return plan;
}

std::vector<MelKernel> available_mel_kernels() {
  std::vector<MelKernel> kernels{generic::kernel};
#if defined(SPEECHLENS_MEL_X86)
  if (cpu_has_avx2()) kernels.push_back(avx2::kernel);
  if (cpu_has_avx512()) kernels.push_back(avx512::kernel);
#endif
  return kernels;
}

const MelKernel& mel_kernel() {
  static const MelKernel chosen = [] {
    const std::vector<MelKernel> kernels = available_mel_kernels();
    if (const char* wanted = std::getenv("SPEECHLENS_MEL_ISA")) {
      for (const MelKernel& k : kernels) {
        if (std::string(k.isa) == wanted) return k;
      }
    }
    return kernels.back();
  }();
  return chosen;
}

}  // namespace speechlens::audio::detail
