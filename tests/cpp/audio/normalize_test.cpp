#include "speechlens/audio/normalize.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace audio = speechlens::audio;

namespace {

TEST(PrepareWaveforms, NormalisesEachClipOverItsValidSamples) {
  const std::vector<at::Tensor> clips = {at::randn({1000}) * 3 + 1, at::randn({400}) * 0.1 - 2};
  const audio::WaveBatch batch = audio::prepare_waveforms(clips, true, true, -5.0f);
  ASSERT_EQ(batch.input_values.sizes(), (at::IntArrayRef{2, 1000}));
  ASSERT_TRUE(batch.attention_mask.defined());
  EXPECT_TRUE(at::equal(batch.attention_mask.sum(1).to(at::kLong), at::tensor(std::vector<int64_t>{1000, 400})));
  const at::Tensor short_clip = batch.input_values[1].narrow(0, 0, 400);
  EXPECT_NEAR(short_clip.mean().item<float>(), 0.0f, 1e-5);
  EXPECT_NEAR(short_clip.var(/*unbiased=*/false).item<float>(), 1.0f, 1e-4);
  EXPECT_TRUE((batch.input_values[1].narrow(0, 400, 600) == -5.0f).all().item<bool>());
}

TEST(PrepareWaveforms, WithoutMaskNormalisesThePaddedRowAsHfDoes) {
  const at::Tensor clip = at::randn({300}) + 1;
  const audio::WaveBatch batch =
      audio::prepare_waveforms({at::randn({500}), clip}, /*do_normalize=*/true);
  EXPECT_FALSE(batch.attention_mask.defined());
  const at::Tensor padded = at::cat({clip, at::zeros({200})});
  EXPECT_TRUE(at::allclose(batch.input_values[1], audio::normalize_waveform(padded), 1e-5, 1e-5));
}

TEST(PrepareWaveforms, NoNormalisationOnlyPads) {
  const at::Tensor clip = at::randn({300});
  const audio::WaveBatch batch = audio::prepare_waveforms({clip, at::randn({10})}, false);
  EXPECT_TRUE(at::equal(batch.input_values[0], clip));
  EXPECT_TRUE((batch.input_values[1].narrow(0, 10, 290) == 0).all().item<bool>());
}

TEST(PrepareWaveforms, OptionsFromConfigAndBadInput) {
  const auto options = audio::WaveformOptions::from_json(
      nlohmann::json{{"do_normalize", false}, {"return_attention_mask", true}});
  EXPECT_FALSE(options.do_normalize);
  EXPECT_TRUE(options.return_attention_mask);
  using speechlens::InvalidInput;
  EXPECT_THROW(audio::prepare_waveforms({}, true), InvalidInput);
  EXPECT_THROW(audio::prepare_waveforms({at::zeros({0})}, true), InvalidInput);
  EXPECT_THROW(audio::prepare_waveforms({at::zeros({2, 3})}, true), InvalidInput);
  EXPECT_THROW(audio::normalize_waveform(at::zeros({3}, at::kInt)), InvalidInput);
}

}  // namespace
