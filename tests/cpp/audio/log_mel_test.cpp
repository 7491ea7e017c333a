#include "speechlens/audio/log_mel.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "../../../src/audio/mel_kernel.h"  // the kernels themselves, to test each ISA
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

// log10(max(mel, 1e-10)) of every frame of the reflect-padded rows by ATen ops: the
// reference each kernel is held to.
at::Tensor aten_log10_mel(const at::Tensor& rows, int n_fft, int hop, const at::Tensor& filters) {
  const at::Tensor padded =
      at::reflection_pad1d(rows.unsqueeze(1), {n_fft / 2, n_fft / 2}).squeeze(1);
  const int64_t frames = rows.size(1) / hop;
  const at::Tensor windowed = padded.unfold(1, n_fft, hop).narrow(1, 0, frames) *
                              at::hann_window(n_fft, /*periodic=*/true, at::kFloat);
  const at::Tensor power = at::fft_rfft(windowed.to(at::kDouble), n_fft, -1).abs().square();
  return at::matmul(power, filters.to(at::kDouble).t()).clamp_min(1e-10).log10().transpose(1, 2);
}

TEST(WhisperLogMelKernel, EveryIsaMatchesFloat64AtenFftOnEveryFrame) {
  // n_fft 400 (Whisper: 200 = 4 5 5 2), 512 (4 4 4 4), 480 (4 4 5 3); 37 frames (not a
  // multiple of any lane count) with reflect padding at both ends.
  for (const int n_fft : {400, 512, 480}) {
    const int hop = n_fft * 2 / 5, n_mels = 64;
    const at::Tensor filters =
        audio::slaney_mel_filter_bank(n_fft / 2 + 1, n_mels, 0.0, 8000.0, 16000).to(at::kFloat).t().contiguous();
    const at::Tensor window = at::hann_window(n_fft, /*periodic=*/true, at::kFloat);
    const auto plan = audio::detail::make_mel_plan(
        n_fft, hop, filters.data_ptr<float>(), n_mels,
        std::vector<float>(window.data_ptr<float>(), window.data_ptr<float>() + n_fft));
    ASSERT_NE(plan, nullptr) << n_fft;
    const at::Tensor wave = (at::randn({1, 37 * hop + 3}) * 0.1).contiguous();
    const at::Tensor reference = aten_log10_mel(wave, n_fft, hop, filters)[0];
    const int64_t frames = reference.size(1);
    for (const auto& kernel : audio::detail::available_mel_kernels()) {
      at::Tensor out = at::full({n_mels, frames}, NAN);
      audio::detail::MelClip clip{wave.data_ptr<float>(), wave.size(1), wave.size(1), 0.0f};
      // Two calls that split the frames mid-group, as the threaded driver does.
      const float peak1 = kernel.frames(*plan, clip, 0, 5, out.data_ptr<float>(), frames);
      const float peak2 = kernel.frames(*plan, clip, 5, frames, out.data_ptr<float>(), frames);
      EXPECT_LE((out - reference).abs().max().item<double>(), 1e-4) << kernel.isa << " n_fft " << n_fft;
      EXPECT_FLOAT_EQ(std::max(peak1, peak2), out.max().item<float>()) << kernel.isa;
    }
  }
  // A size the kernel does not factor (n_fft / 2 = 7) has no plan; the extractor then uses ATen.
  EXPECT_EQ(audio::detail::make_mel_plan(14, 5, nullptr, 1, std::vector<float>(14)), nullptr);
}

TEST(WhisperLogMelKernel, PaddingValueAndShortClipsMatchTheAtenPath) {
  // The kernel pads on the fly (the padding value, then the reflection of the padded tail);
  // the ATen path (taken when the waveform requires grad) pads by copies.
  audio::WhisperFeatureOptions options;
  options.n_samples = 16000;
  for (const float padding_value : {0.0f, 0.25f}) {
    options.padding_value = padding_value;
    const audio::WhisperFeatureExtractor extractor(options);
    for (const int64_t length : {201, 999, 8000, 15900, 16000, 20000}) {
      const at::Tensor wave = at::randn({2, length}) * 0.1;
      const at::Tensor fast = extractor(wave);
      const at::Tensor slow = extractor(wave.clone().requires_grad_(true)).detach();
      // Two float32 FFTs (the kernel's, MKL's) differ by ~1e-5 in bins far below a frame's peak.
      EXPECT_LE((fast - slow).abs().max().item<float>(), 5e-5) << padding_value << " " << length;
      const at::Tensor shorter = wave[0].narrow(0, 0, std::min<int64_t>(length, length / 2 + 201));
      const audio::WhisperFeatures listed =
          extractor({shorter, wave[1]}, audio::WhisperPadding::longest);
      const audio::WhisperFeatures listed_slow = extractor(
          {shorter.clone().requires_grad_(true), wave[1]}, audio::WhisperPadding::longest);
      EXPECT_LE((listed.input_features - listed_slow.input_features.detach()).abs().max().item<float>(), 5e-5);
    }
  }
}

// The error for a hostile preprocessor config names the key, and comes before any allocation.
void expect_refused(const nlohmann::json& config, const std::string& key) {
  try {
    const audio::WhisperFeatureExtractor extractor(config);
    ADD_FAILURE() << config.dump() << " was accepted";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("'" + key + "'"), std::string::npos)
        << config.dump() << ": " << error.what();
  }
}

TEST(WhisperLogMel, HostilePreprocessorConfigIsRefusedNamingTheKey) {
  // Each of these overflowed an int or allocated gigabytes before (issue 16).
  expect_refused({{"chunk_length", 300000}}, "chunk_length");  // n_samples wrapped to 505,032,704
  expect_refused({{"chunk_length", 134217}}, "chunk_length");  // 8.6 GB
  expect_refused({{"n_fft", 20000000}}, "n_fft");              // 9.4 GB mel bank
  expect_refused({{"chunk_length", 30}, {"sampling_rate", 2147483647}}, "sampling_rate");
  expect_refused({{"chunk_length", 500}, {"sampling_rate", 96000}}, "chunk_length");
  expect_refused({{"feature_size", 100000000}}, "feature_size");
  expect_refused({{"feature_size", int64_t{1} << 40}}, "feature_size");  // past int: no wrap
  expect_refused({{"hop_length", 0}}, "hop_length");
  expect_refused({{"n_fft", 400.5}}, "n_fft");
  expect_refused({{"n_samples", -1}}, "n_samples");
  expect_refused({{"padding_value", "zero"}}, "padding_value");
  // The options struct is held to the same bounds.
  audio::WhisperFeatureOptions options;
  options.n_fft = 20000000;
  EXPECT_THROW(audio::WhisperFeatureExtractor{options}, InvalidInput);
  // HF ignores a stored n_samples when chunk_length is given; so do we.
  EXPECT_EQ(audio::WhisperFeatureExtractor(nlohmann::json{{"chunk_length", 30}, {"n_samples", -5}})
                .options()
                .n_samples,
            480000);
}

}  // namespace
