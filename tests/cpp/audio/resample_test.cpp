#include "speechlens/audio/resample.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "speechlens/util/error.h"

namespace audio = speechlens::audio;

namespace {

at::Tensor sine(double hertz, int rate, int64_t n, double amplitude = 0.5) {
  return at::sin(at::arange(n, at::kDouble).mul(2 * M_PI * hertz / rate)).mul(amplitude);
}

// Frequency of the strongest FFT bin, in Hz.
double dominant_frequency(const at::Tensor& wave, int rate) {
  const at::Tensor spectrum = at::fft_rfft(wave.to(at::kDouble)).abs();
  const int64_t bin = spectrum.argmax().item<int64_t>();
  return static_cast<double>(bin) * rate / wave.size(0);
}

TEST(Resample, SineKeepsItsFrequencyAndAmplitude) {
  for (auto [from, to] : {std::pair{44100, 16000}, {48000, 16000}, {8000, 16000}, {22050, 16000}}) {
    const at::Tensor x = sine(1000.0, from, from * 2).to(at::kFloat);
    const at::Tensor y = audio::resample(x, from, to);
    ASSERT_EQ(y.size(0), 2 * to) << from << "->" << to;
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    EXPECT_NEAR(dominant_frequency(y, to), 1000.0, 0.5) << from << "->" << to;
    // Away from the zero-padded edges the output is the same sine sampled at the new rate.
    const int64_t edge = to / 20;
    const at::Tensor expected = sine(1000.0, to, y.size(0)).to(at::kFloat);
    const float error = (y - expected).narrow(0, edge, y.size(0) - 2 * edge).abs().max().item<float>();
    EXPECT_LT(error, 1e-5f) << from << "->" << to;
  }
}

TEST(Resample, RemovesContentAboveTheNewNyquistFrequency) {
  // 10 kHz cannot exist at 16 kHz; without the low-pass it would alias to 6 kHz.
  const at::Tensor y = audio::resample(sine(10000.0, 44100, 44100), 44100, 16000);
  const int64_t edge = 800;
  const double rms = y.narrow(0, edge, y.size(0) - 2 * edge).pow(2).mean().sqrt().item<double>();
  EXPECT_LT(rms, 1e-4);
}

TEST(Resample, BatchRowsMatchSingleCalls) {
  const at::Tensor batch = at::randn({3, 5000}, at::kDouble);
  const at::Tensor y = audio::resample(batch, 22050, 16000);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{3, (5000 * 320 + 440) / 441}));
  EXPECT_EQ(y.scalar_type(), at::kDouble);
  for (int64_t b = 0; b < 3; ++b) {
    EXPECT_TRUE(at::allclose(y[b], audio::resample(batch[b], 22050, 16000), 1e-12, 1e-12));
  }
}

TEST(Resample, HannWindowAndSameRate) {
  const at::Tensor x = sine(440.0, 16000, 16000).to(at::kFloat);
  EXPECT_TRUE(at::equal(audio::resample(x, 16000, 16000), x));
  audio::ResampleOptions hann;
  hann.window = audio::ResampleWindow::hann;
  hann.lowpass_filter_width = 6;
  hann.rolloff = 0.99;
  const at::Tensor y = audio::resample(x, 16000, 24000, hann);
  EXPECT_EQ(y.size(0), 24000);
  EXPECT_NEAR(dominant_frequency(y, 24000), 440.0, 1.0);
}

TEST(Resample, EmptyInputGivesEmptyOutput) {
  EXPECT_EQ(audio::resample(at::zeros({0}), 44100, 16000).numel(), 0);
}

TEST(Resample, RejectsBadArguments) {
  using speechlens::InvalidInput;
  EXPECT_THROW(audio::resample(at::zeros({2, 2, 2}), 8000, 16000), InvalidInput);
  EXPECT_THROW(audio::resample(at::zeros({4}, at::kLong), 8000, 16000), InvalidInput);
  EXPECT_THROW(audio::resample(at::zeros({4}), 0, 16000), InvalidInput);
  EXPECT_THROW(audio::resample(at::zeros({4}), 8000, -1), InvalidInput);
  audio::ResampleOptions bad;
  bad.rolloff = 1.5;
  EXPECT_THROW(audio::resample(at::zeros({4}), 8000, 16000, bad), InvalidInput);
}

}  // namespace
