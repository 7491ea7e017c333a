// The body of the log-mel kernel (see mel_kernel.h), included once per ISA by
// mel_kernel_{generic,avx2,avx512}.cpp with SL_MEL_NS (the namespace) and SL_MEL_LANES (frames
// per group) defined. GCC/Clang vector extensions: the compiler emits the ISA the including
// file is compiled for. Everything here lives in the per-ISA namespace (no ODR clashes).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "mel_kernel.h"

namespace speechlens::audio::detail::SL_MEL_NS {
namespace {

constexpr int L = SL_MEL_LANES;
typedef float Vf __attribute__((vector_size(L * sizeof(float))));
typedef int32_t Vi __attribute__((vector_size(L * sizeof(int32_t))));

inline Vf load(const float* p) {
  Vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, Vf v) { std::memcpy(p, &v, sizeof(v)); }
inline Vf splat(float x) { return Vf{} + x; }
inline Vf vmax(Vf a, Vf b) { return a > b ? a : b; }

// Complex values of L lanes in split form.
struct Cx {
  Vf re, im;
};
inline Cx operator+(Cx a, Cx b) { return {a.re + b.re, a.im + b.im}; }
inline Cx operator-(Cx a, Cx b) { return {a.re - b.re, a.im - b.im}; }
inline Cx scale(Cx a, float s) { return {a.re * s, a.im * s}; }
inline Cx times_minus_i(Cx a) { return {a.im, -a.re}; }  // -i * a
inline Cx times_i(Cx a) { return {-a.im, a.re}; }        //  i * a
inline Cx rotate(Cx a, float wr, float wi) {              // a * (wr + i wi)
  return {a.re * wr - a.im * wi, a.re * wi + a.im * wr};
}

// Forward DFTs of size R (omega = exp(-2 pi i / R)), in place.
template <int R>
inline void dft(Cx* a);

template <>
inline void dft<2>(Cx* a) {
  const Cx t = a[0] - a[1];
  a[0] = a[0] + a[1];
  a[1] = t;
}

template <>
inline void dft<3>(Cx* a) {
  constexpr float kSin = 0.86602540378443864676f;  // sin(2 pi / 3)
  const Cx t1 = a[1] + a[2];
  const Cx t2 = times_minus_i(scale(a[1] - a[2], kSin));
  const Cx t3 = a[0] - scale(t1, 0.5f);
  a[0] = a[0] + t1;
  a[1] = t3 + t2;
  a[2] = t3 - t2;
}

template <>
inline void dft<4>(Cx* a) {
  const Cx s02 = a[0] + a[2], d02 = a[0] - a[2];
  const Cx s13 = a[1] + a[3], d13 = times_minus_i(a[1] - a[3]);
  a[0] = s02 + s13;
  a[2] = s02 - s13;
  a[1] = d02 + d13;
  a[3] = d02 - d13;
}

template <>
inline void dft<5>(Cx* a) {
  constexpr float c1 = 0.30901699437494742410f;   // cos(2 pi / 5)
  constexpr float c2 = -0.80901699437494742410f;  // cos(4 pi / 5)
  constexpr float s1 = 0.95105651629515357212f;   // sin(2 pi / 5)
  constexpr float s2 = 0.58778525229247312917f;   // sin(4 pi / 5)
  const Cx t1 = a[1] + a[4], t2 = a[2] + a[3];
  const Cx t3 = a[1] - a[4], t4 = a[2] - a[3];
  const Cx t5 = a[0] + scale(t1, c1) + scale(t2, c2);
  const Cx t6 = a[0] + scale(t1, c2) + scale(t2, c1);
  const Cx t7 = times_minus_i(scale(t3, s1) + scale(t4, s2));
  const Cx t8 = times_minus_i(scale(t3, s2) - scale(t4, s1));
  a[0] = a[0] + t1 + t2;
  a[1] = t5 + t7;
  a[4] = t5 - t7;
  a[2] = t6 + t8;
  a[3] = t6 - t8;
}

// One Stockham autosort stage of radix R: sub-transforms of size n, stride s (n * s = m).
// y[q + s (R p + k)] = w_n^(p k) * sum_j x[q + s (p + j n/R)] omega_R^(j k).
template <int R>
void stage(int n, int s, const float* xr, const float* xi, float* yr, float* yi,
           const float* twr, const float* twi) {
  const int m = n / R;
  for (int p = 0; p < m; ++p) {
    const float* wr = twr + p * (R - 1);
    const float* wi = twi + p * (R - 1);
    for (int q = 0; q < s; ++q) {
      Cx a[R];
      for (int j = 0; j < R; ++j) {
        const int index = (q + s * (p + j * m)) * L;
        a[j] = {load(xr + index), load(xi + index)};
      }
      dft<R>(a);
      for (int k = 0; k < R; ++k) {
        const Cx b = (k == 0 || p == 0) ? a[k] : rotate(a[k], wr[k - 1], wi[k - 1]);
        const int index = (q + s * (R * p + k)) * L;
        store(yr + index, b.re);
        store(yi + index, b.im);
      }
    }
  }
}

// log10 for x >= 1e-10 (normal floats): exponent + a Cephes polynomial of log(1 + f) on
// [sqrt(1/2) - 1, sqrt(2) - 1], scaled by log10(e); within 2 ulp of the true value.
inline Vf log10_positive(Vf x) {
  Vi bits;
  std::memcpy(&bits, &x, sizeof(bits));
  Vi exponent = ((bits >> 23) & 0xff) - 127;
  Vi mantissa_bits = (bits & 0x007fffff) | 0x3f800000;  // [1, 2)
  Vf mantissa;
  std::memcpy(&mantissa, &mantissa_bits, sizeof(mantissa));
  const Vi big = mantissa > 1.41421356237309504880f;  // -1 where the mantissa is halved
  mantissa = big ? mantissa * 0.5f : mantissa;
  exponent = exponent - big;
  const Vf f = mantissa - 1.0f;
  const Vf e = __builtin_convertvector(exponent, Vf);
  const Vf z = f * f;
  Vf y = f * 7.0376836292E-2f - 1.1514610310E-1f;
  y = y * f + 1.1676998740E-1f;
  y = y * f - 1.2420140846E-1f;
  y = y * f + 1.4249322787E-1f;
  y = y * f - 1.6668057665E-1f;
  y = y * f + 2.0000714765E-1f;
  y = y * f - 2.4999993993E-1f;
  y = y * f + 3.3333331174E-1f;
  y = y * f * z;
  y = y - 0.5f * z;
  // log(x) = e ln2 + f + y, ln 2 split in two for accuracy; then to base 10 with the parts
  // summed smallest first.
  const Vf ln = (y + e * -2.12194440E-4f) + f + e * 0.693359375f;
  return ln * 0.43429448190325182765f;
}

struct Scratch {
  std::vector<float> xr, xi, yr, yi, power, edge;
};

// Perfect-shuffle halves: {a0, b0, a1, b1, ...} of the low and of the high halves.
template <size_t... I>
inline Vf interleave_low(Vf a, Vf b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, ((I % 2) ? L + I / 2 : I / 2)...);
}
template <size_t... I>
inline Vf interleave_high(Vf a, Vf b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, ((I % 2) ? L + L / 2 + I / 2 : L / 2 + I / 2)...);
}

// Transposes an L x L block in registers: log2(L) perfect shuffles of the rows.
inline void transpose(Vf* rows) {
  constexpr auto lanes = std::make_index_sequence<L>{};
  for (int width = 1; width < L; width *= 2) {
    Vf next[L];
    for (int i = 0; i < L / 2; ++i) {
      next[2 * i] = interleave_low(rows[i], rows[i + L / 2], lanes);
      next[2 * i + 1] = interleave_high(rows[i], rows[i + L / 2], lanes);
    }
    for (int i = 0; i < L; ++i) rows[i] = next[i];
  }
}

// The windowed frames of a group, one per lane, into the complex input z[j] = x[2j] + i x[2j+1]
// laid out [j][lane]: L x L blocks of samples are transposed in registers, so sample n of
// every lane lands in one vector, which goes to z[n / 2] (real part for even n, else imag).
inline void gather(const MelPlan& plan, const float* const* samples, float* zr, float* zi) {
  const float* window = plan.window.data();
  int n0 = 0;
  for (; n0 + L <= plan.n_fft; n0 += L) {
    Vf rows[L];
    const Vf w = load(window + n0);
    for (int lane = 0; lane < L; ++lane) rows[lane] = load(samples[lane] + n0) * w;
    transpose(rows);
    for (int i = 0; i < L; ++i) {
      const int n = n0 + i;
      store((n % 2 == 0 ? zr : zi) + (n / 2) * L, rows[i]);
    }
  }
  for (int lane = 0; lane < L; ++lane) {
    for (int n = n0; n < plan.n_fft; ++n) {
      (n % 2 == 0 ? zr : zi)[(n / 2) * L + lane] = samples[lane][n] * window[n];
    }
  }
}

// The samples of frame f: a pointer into the clip where the frame lies inside its real
// samples, else a copy built in `edge` with the reflect padding and the padding value.
inline const float* frame_samples(const MelPlan& plan, const MelClip& clip, int64_t f,
                                  float* edge) {
  const int64_t start = f * plan.hop - plan.n_fft / 2;
  if (start >= 0 && start + plan.n_fft <= clip.length) return clip.data + start;
  const int64_t last = clip.padded_length - 1;
  for (int n = 0; n < plan.n_fft; ++n) {
    int64_t i = start + n;
    if (i < 0) i = -i;
    if (i > last) i = 2 * last - i;
    edge[n] = i < clip.length ? clip.data[i] : clip.pad_value;
  }
  return edge;
}

float frames(const MelPlan& plan, const MelClip& clip, int64_t begin, int64_t end, float* out,
             int64_t stride) {
  const int m = plan.m;
  Scratch s;
  s.xr.resize(static_cast<size_t>(m) * L);
  s.xi.resize(s.xr.size());
  s.yr.resize(s.xr.size());
  s.yi.resize(s.xr.size());
  s.power.resize(static_cast<size_t>(plan.n_freqs) * L);
  s.edge.resize(static_cast<size_t>(plan.n_fft) * L);
  const Vf floor = splat(1e-10f);
  Vf peak = splat(-INFINITY);
  float mel_out[L];

  for (int64_t f0 = begin; f0 < end; f0 += L) {
    const int valid = static_cast<int>(std::min<int64_t>(L, end - f0));
    const float* samples[L];
    for (int lane = 0; lane < L; ++lane) {
      // Lanes past the end repeat the last frame (their results are not stored).
      const int64_t f = f0 + std::min(lane, valid - 1);
      samples[lane] = frame_samples(plan, clip, f, s.edge.data() + lane * plan.n_fft);
    }
    gather(plan, samples, s.xr.data(), s.xi.data());
    // The complex FFT of size m, ping-ponging between x and y.
    float *xr = s.xr.data(), *xi = s.xi.data(), *yr = s.yr.data(), *yi = s.yi.data();
    int n = m, stride_s = 1;
    for (size_t st = 0; st < plan.radices.size(); ++st) {
      const float* twr = plan.twiddle_re.data() + plan.twiddle_offset[st];
      const float* twi = plan.twiddle_im.data() + plan.twiddle_offset[st];
      switch (plan.radices[st]) {
        case 2: stage<2>(n, stride_s, xr, xi, yr, yi, twr, twi); break;
        case 3: stage<3>(n, stride_s, xr, xi, yr, yi, twr, twi); break;
        case 4: stage<4>(n, stride_s, xr, xi, yr, yi, twr, twi); break;
        default: stage<5>(n, stride_s, xr, xi, yr, yi, twr, twi); break;
      }
      n /= plan.radices[st];
      stride_s *= plan.radices[st];
      std::swap(xr, yr);
      std::swap(xi, yi);
    }
    // The real spectrum from the half-size complex one: X[k] = E[k] + w^k O[k] with
    // E = (Z[k] + conj Z[m-k]) / 2, O = -i (Z[k] - conj Z[m-k]) / 2; then |X[k]|^2.
    for (int k = 0; k <= m; ++k) {
      const int a = (k == m ? 0 : k) * L, b = (k == 0 ? 0 : m - k) * L;
      const Vf zr = load(xr + a), zi = load(xi + a), cr = load(xr + b), ci = load(xi + b);
      const Vf er = (zr + cr) * 0.5f, ei = (zi - ci) * 0.5f;
      const Vf orr = (zi + ci) * 0.5f, oi = (cr - zr) * 0.5f;
      const float wr = plan.split_re[k], wi = plan.split_im[k];
      const Vf re = er + (orr * wr - oi * wi);
      const Vf im = ei + (orr * wi + oi * wr);
      store(s.power.data() + k * L, re * re + im * im);
    }
    // Sparse mel sums, log10, one contiguous row segment per mel bin.
    for (int mel = 0; mel < plan.n_mels; ++mel) {
      const float* w = plan.mel_weights.data() + plan.mel_offset[mel];
      Vf acc = Vf{};
      for (int k = plan.mel_begin[mel]; k < plan.mel_end[mel]; ++k) {
        acc += load(s.power.data() + k * L) * w[k - plan.mel_begin[mel]];
      }
      const Vf value = log10_positive(vmax(acc, floor));
      float* row = out + static_cast<int64_t>(mel) * stride + f0;
      if (valid == L) {
        store(row, value);
        peak = vmax(peak, value);
      } else {
        store(mel_out, value);
        for (int lane = 0; lane < valid; ++lane) {
          row[lane] = mel_out[lane];
          peak[lane] = std::max(peak[lane], mel_out[lane]);
        }
      }
    }
  }
  float result = -INFINITY;
  for (int lane = 0; lane < L; ++lane) result = std::max(result, peak[lane]);
  return result;
}

}  // namespace

const MelKernel kernel{SL_MEL_ISA_NAME, L, &frames};

}  // namespace speechlens::audio::detail::SL_MEL_NS
