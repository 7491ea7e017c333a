#include "speechlens/audio/resample.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

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

TEST(Resample, CoprimeRatesKeepTheKernelBoundedAndTheRateClose) {
  // 44101 -> 16000 and 16001 -> 16000 built kernels of 5.7 and 6.1 GB before (issue 16).
  for (const int from : {44101, 16001, 999983, 1001}) {
    const audio::ResamplePlan plan = audio::plan_resample(from, 16000);
    EXPECT_GT(plan.rate_error, 0.0) << from;
    EXPECT_LE(plan.rate_error, audio::kMaxRateError) << from;
    EXPECT_LE(plan.up * plan.down, audio::kMaxResampleKernel) << from;
    const at::Tensor y = audio::resample(at::randn({10}), from, 16000);
    EXPECT_EQ(y.size(0), (10 * 16000 + from - 1) / from) << from;
  }
  // The approximated ratio still resamples a tone: 1 kHz at 44101 Hz -> 16 kHz. Output k
  // sits at input time k down / up (not k 44101 / 16000): the filter is as exact as for a
  // usual ratio, and the time drifts by rate_error (2.3e-7 here, 0.14 ms over 10 minutes).
  const audio::ResamplePlan plan = audio::plan_resample(44101, 16000);
  const at::Tensor x = sine(1000.0, 44101, 44101);
  const at::Tensor y = audio::resample(x, 44101, 16000);
  ASSERT_EQ(y.size(0), 16000);
  const at::Tensor time = at::arange(16000, at::kDouble).mul(static_cast<double>(plan.down) /
                                                             static_cast<double>(plan.up) / 44101);
  const at::Tensor expected = at::sin(time.mul(2 * M_PI * 1000.0)).mul(0.5);
  EXPECT_LT((y - expected).narrow(0, 800, 14400).abs().max().item<double>(), 1e-5);
  EXPECT_LT(plan.rate_error, 1e-6);
  // Usual rates keep their exact ratio.
  EXPECT_EQ(audio::plan_resample(44100, 16000).rate_error, 0.0);
  EXPECT_EQ(audio::plan_resample(44100, 16000).up, 160);
}

TEST(Resample, AbsurdRatesAreRefusedNamingTheArgument) {
  try {
    audio::resample(at::zeros({4}), 2147483647, 16000);
    ADD_FAILURE() << "2^31 - 1 Hz was accepted";
  } catch (const speechlens::InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("from_rate = 2147483647 Hz"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(audio::resample(at::zeros({4}), 16000, 1'000'001), speechlens::InvalidInput);
  EXPECT_THROW(audio::resample(at::zeros({4}), 999, 16000), speechlens::InvalidInput);
  EXPECT_THROW(audio::resample(at::zeros({4}), 16000, 1), speechlens::InvalidInput);
}

}  // namespace
