#pragma once
// The CPU kernel behind WhisperFeatureExtractor's no-grad path: windowed frames -> real FFT ->
// power -> (sparse) mel filter bank -> log10(max(x, 1e-10)), for frames of one clip, with
// reflect padding at both ends and implicit padding past the clip's own length.
//
// The frames of a group are laid out across SIMD lanes (one frame per lane), so every
// butterfly, the power, the mel sums and the log run on L frames at once, and the mel output of
// a group is L consecutive frames: one contiguous store per mel row of [n_mels, frames]. The
// complex FFT of size n_fft / 2 is a mixed-radix (2, 3, 4, 5) Stockham transform; the real
// spectrum comes from its split (Numerical Recipes' realft). Each Slaney filter touches a few
// bins only, so the mel product sums the non-zero weights (the dense 201 x 80 product is 2.5x
// the FFT's own work).
//
// Compiled once per x86 vector ISA (mel_kernel_{generic,avx2,avx512}.cpp, the body in
// mel_kernel_impl.h) and picked at run time; no ATen in the kernel translation units.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace speechlens::audio::detail {

struct MelPlan {
  int n_fft = 0;
  int hop = 0;
  int n_mels = 0;
  int n_freqs = 0;  // n_fft / 2 + 1
  int m = 0;        // the complex FFT's size, n_fft / 2
  std::vector<float> window;         // [n_fft]
  std::vector<int> radices;          // stage radices of the size-m FFT, product m
  std::vector<int> twiddle_offset;   // per stage, into twiddle_re / twiddle_im
  std::vector<float> twiddle_re, twiddle_im;  // stage s: [p][k-1] = exp(-2 pi i p k / n_s)
  std::vector<float> split_re, split_im;      // exp(-2 pi i k / n_fft), k in [0, m]
  std::vector<int> mel_begin, mel_end;        // bins [begin, end) with non-zero weight
  std::vector<int> mel_offset;                // into mel_weights
  std::vector<float> mel_weights;
};

// The plan for a real FFT of n_fft points (even, n_fft / 2 a product of 2, 3 and 5) and a
// float32 filter bank [n_mels, n_fft / 2 + 1]; nullptr when the kernel cannot do that size.
std::shared_ptr<const MelPlan> make_mel_plan(int n_fft, int hop, const float* filters,
                                             int n_mels, const std::vector<float>& window);

// One clip: `length` real samples; past them, up to `padded_length`, the value `pad_value`;
// the STFT reflects at 0 and at padded_length - 1 (center=True).
struct MelClip {
  const float* data = nullptr;
  int64_t length = 0;
  int64_t padded_length = 0;
  float pad_value = 0.0f;
};

// log10(max(mel power, 1e-10)) of frames [begin, end) of `clip` into out[mel * stride + frame];
// returns the largest value written.
using MelFramesFn = float (*)(const MelPlan&, const MelClip&, int64_t begin, int64_t end,
                              float* out, int64_t stride);

// The frames per SIMD group of the kernel in use (for chunking work).
struct MelKernel {
  const char* isa;
  int lanes;
  MelFramesFn frames;
};

// The best kernel this CPU runs, or the one named by SPEECHLENS_MEL_ISA (generic, avx2,
// avx512) when set and available.
const MelKernel& mel_kernel();
// Every kernel this build has and this CPU runs (tests compare each with the ATen path).
std::vector<MelKernel> available_mel_kernels();

namespace generic {
extern const MelKernel kernel;
}
#if defined(SPEECHLENS_MEL_X86)
namespace avx2 {
extern const MelKernel kernel;
}
namespace avx512 {
extern const MelKernel kernel;
}
#endif

}  // namespace speechlens::audio::detail
