#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "io/io_test_util.h"

#include <cstdlib>
#include <filesystem>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/io/safetensors.h"
#include "speechlens/models/whisper.h"
#include "speechlens/util/error.h"

namespace fs = std::filesystem;
using speechlens::models::HookedWhisper;

namespace {

fs::path fixture(const std::string& name) { return speechlens::io::testing::test_data_dir() / "models" / name; }

}  // namespace

TEST(HookedWhisper, LoadsAnHfFolderAndMatchesHfLogits) {
  auto dir = fixture("whisper_tiny");
  if (dir.empty() || !fs::exists(dir)) GTEST_FAIL() << "run tests/fixtures/make_fixtures.py first";
  auto model = HookedWhisper::from_pretrained(dir);
  auto expected = speechlens::io::SafetensorsFile::open(dir / "expected.safetensors");
  speechlens::hooks::ActivationCache cache;
  speechlens::hooks::HookScope scope(model->hooks());
  scope.add("encoder.blocks.*.hook_resid_post", cache.recorder());
  auto logits = model->forward({expected.get("mel"), expected.get("tokens"), {}});
  EXPECT_LT((logits - expected.get("logits")).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache["encoder.blocks.1.hook_resid_post"].sizes(), at::IntArrayRef({1, 60, 48}));
}

TEST(HookedWhisper, MisShapedCheckpointNamesEveryBadTensor) {
  auto dir = fixture("whisper_misshaped");
  if (dir.empty() || !fs::exists(dir)) GTEST_FAIL() << "run tests/fixtures/make_fixtures.py first";
  try {
    HookedWhisper::from_pretrained(dir);
    FAIL() << "expected InvalidInput";
  } catch (const speechlens::InvalidInput& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("model.encoder.conv1.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("model.decoder.layers.1.fc2.weight"), std::string::npos) << message;
  }
}

TEST(HookedWhisper, RejectsFeaturesOfTheWrongShape) {
  auto dir = fixture("whisper_tiny");
  if (dir.empty() || !fs::exists(dir)) GTEST_FAIL() << "run tests/fixtures/make_fixtures.py first";
  auto model = HookedWhisper::from_pretrained(dir);
  auto tokens = at::tensor(std::vector<int64_t>{1, 2}).view({1, 2});
  EXPECT_THROW(model->forward({at::zeros({1, 81, 100}), tokens, {}}), speechlens::InvalidInput);
  EXPECT_THROW(model->forward({at::zeros({1, 80, 500}), tokens, {}}), speechlens::InvalidInput);
  EXPECT_THROW(model->forward({at::zeros({1, 80, 100}), tokens + 1000, {}}), speechlens::InvalidInput);
}
