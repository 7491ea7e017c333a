#include "speechlens/audio/log_mel.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace audio = speechlens::audio;
using speechlens::InvalidInput;

namespace {

at::Tensor sine(double hertz, int64_t n) {
  return at::sin(at::arange(n, at::kDouble).mul(2 * M_PI * hertz / 16000)).mul(0.5).to(at::kFloat);
}

TEST(WhisperLogMel, ShapeAndRange) {
  const audio::WhisperFeatureExtractor extractor;
  const at::Tensor features = extractor(at::randn({16000}) * 0.1);
  ASSERT_EQ(features.sizes(), (at::IntArrayRef{80, 3000}));
  EXPECT_EQ(features.scalar_type(), at::kFloat);
  // (log10 + 4) / 4 with an 8-decade floor below the peak: a range of exactly 2.
  const float peak = features.max().item<float>();
  EXPECT_NEAR(features.min().item<float>(), peak - 2.0f, 1e-5);
  EXPECT_TRUE(at::isfinite(features).all().item<bool>());
}

TEST(WhisperLogMel, SilenceIsTheFloorEverywhere) {
  const at::Tensor features = audio::WhisperFeatureExtractor()(at::zeros({8000}));
  // log10(1e-10) = -10 -> (-10 + 4) / 4 = -1.5.
  EXPECT_TRUE(at::allclose(features, at::full_like(features, -1.5f)));
}

TEST(WhisperLogMel, ToneLightsTheMelBandOfItsFrequency) {
  const audio::WhisperFeatureExtractor extractor;
  const at::Tensor features = extractor(sine(1000.0, 16000));
  const at::Tensor band_energy = features.narrow(1, 10, 80).mean(1);  // inside the tone
  const int64_t loudest = band_energy.argmax().item<int64_t>();
  // The filter whose triangle peaks nearest 1 kHz.
  const at::Tensor bank = audio::slaney_mel_filter_bank(201, 80, 0.0, 8000.0, 16000);
  const int64_t bin_1khz = 25;  // 1000 Hz / (8000 Hz / 200 bins)
  EXPECT_EQ(loudest, bank[bin_1khz].argmax().item<int64_t>());
}

TEST(WhisperLogMel, MelFilterBankIsSlaneyNormalised) {
  const at::Tensor bank = audio::slaney_mel_filter_bank(201, 128, 0.0, 8000.0, 16000);
  ASSERT_EQ(bank.sizes(), (at::IntArrayRef{201, 128}));
  EXPECT_GE(bank.min().item<double>(), 0.0);
  EXPECT_TRUE((bank.amax(0) > 0).all().item<bool>()) << "every filter covers an FFT bin";
  // Slaney area normalisation: triangle height 2 / (upper - lower edge in Hz), so the
  // integral over frequency is ~1 (up to bin sampling), i.e. sum * 40 Hz per bin ~ 1.
  const at::Tensor area = bank.sum(0) * 40.0;
  EXPECT_NEAR(area.narrow(0, 40, 88).mean().item<double>(), 1.0, 0.05);
}

TEST(WhisperLogMel, LongInputIsTruncatedAndBatchRowsAreIndependent) {
  const audio::WhisperFeatureExtractor extractor;
  const at::Tensor long_clip = at::randn({16000 * 45}) * 0.1;
  const at::Tensor truncated = extractor(long_clip.narrow(0, 0, 480000));
  EXPECT_TRUE(at::equal(extractor(long_clip), truncated));

  const at::Tensor quiet = at::randn({16000}) * 0.01;
  const at::Tensor batch = extractor(at::stack({long_clip.narrow(0, 0, 16000), quiet}));
  ASSERT_EQ(batch.sizes(), (at::IntArrayRef{2, 80, 3000}));
  EXPECT_TRUE(at::allclose(batch[1], extractor(quiet), 1e-5, 1e-5));
}

TEST(WhisperLogMel, BatchOfUnequalClipsHasHfAttentionMask) {
  const audio::WhisperFeatureExtractor extractor;
  const std::vector<at::Tensor> clips = {at::randn({16000}), at::randn({1601}),
                                         at::randn({16000 * 40})};
  const audio::WhisperFeatures padded = extractor(clips);
  ASSERT_EQ(padded.input_features.sizes(), (at::IntArrayRef{3, 80, 3000}));
  ASSERT_EQ(padded.attention_mask.sizes(), (at::IntArrayRef{3, 3000}));
  EXPECT_EQ(padded.attention_mask.scalar_type(), at::kInt);
  EXPECT_TRUE(at::equal(padded.attention_mask.sum(1).to(at::kLong), at::tensor(std::vector<int64_t>{100, 11, 3000})));

  const audio::WhisperFeatures longest = extractor(
      {at::randn({16000}), at::randn({1601})}, audio::WhisperPadding::longest);
  ASSERT_EQ(longest.input_features.sizes(), (at::IntArrayRef{2, 80, 100}));
  EXPECT_TRUE(at::equal(longest.attention_mask.sum(1).to(at::kLong), at::tensor(std::vector<int64_t>{100, 11})));
  EXPECT_THROW(extractor({at::randn({16000 * 31})}, audio::WhisperPadding::max_length, false),
               InvalidInput);
  EXPECT_EQ(extractor({at::randn({16000 * 31})}, audio::WhisperPadding::longest, false)
                .input_features.size(2),
            3100);
}

TEST(WhisperLogMel, OptionsFromPreprocessorConfig) {
  const nlohmann::json config = {{"feature_size", 128}, {"sampling_rate", 16000},
                                 {"hop_length", 160},   {"chunk_length", 30},
                                 {"n_fft", 400},        {"n_samples", 480000}};
  const audio::WhisperFeatureExtractor extractor(config);
  EXPECT_EQ(extractor.options().n_mels, 128);
  EXPECT_EQ(extractor(at::randn({4000})).sizes(), (at::IntArrayRef{128, 3000}));
  EXPECT_THROW(audio::WhisperFeatureExtractor(nlohmann::json{{"feature_size", "many"}}),
               InvalidInput);
  EXPECT_THROW(audio::WhisperFeatureExtractor(nlohmann::json{{"hop_length", 0}}), InvalidInput);
}

TEST(WhisperLogMel, RejectsBadWaveforms) {
  const audio::WhisperFeatureExtractor extractor;
  EXPECT_THROW(extractor(at::zeros({0})), InvalidInput);
  EXPECT_THROW(extractor(at::zeros({2, 2, 2})), InvalidInput);
  EXPECT_THROW(extractor(at::zeros({100}, at::kInt)), InvalidInput);
  EXPECT_THROW(extractor(std::vector<at::Tensor>{}), InvalidInput);
  EXPECT_THROW(extractor({at::zeros({100})}, audio::WhisperPadding::longest), InvalidInput)
      << "too short for the STFT's reflect padding";
}

}  // namespace
