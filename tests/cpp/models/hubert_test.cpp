// HookedHubert on the tiny checkpoints of tests/fixtures/hubert_fixtures.py (numerical parity
// with HF is proven in tests/python/test_hubert_parity.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "speechlens/models/hubert.h"
#include "speechlens/text/ctc_decoder.h"
#include "speechlens/util/error.h"

namespace speechlens::models {
namespace {

std::filesystem::path fixture(const std::string& name) {
  const auto dir = io::testing::test_data_dir() / "hubert" / name;
  return std::filesystem::exists(dir / "config.json") ? dir : std::filesystem::path();
}

#define REQUIRE_FIXTURE(dir)                                                              \
  if ((dir).empty()) GTEST_FAIL() << "run tests/fixtures/make_fixtures.py and set SPEECHLENS_TEST_DATA"

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(HookedHubert, PostLnCtcCheckpointHasTheDocumentedHookNames) {
  const auto dir = fixture("ctc");
  REQUIRE_FIXTURE(dir);
  auto model = HookedHubert::from_pretrained(dir);
  const auto& names = model->hook_names();
  ASSERT_GE(names.size(), 5u);
  EXPECT_EQ(names[0], "feature_extractor.hook_input");
  EXPECT_EQ(names[1], "feature_extractor.conv0.hook_out");
  EXPECT_EQ(names[3], "feature_extractor.conv2.hook_out");
  for (const char* name : {"feature_projection.ln.hook_normalized", "feature_projection.hook_out",
                           "encoder.hook_pos_conv", "encoder.ln_pre.hook_normalized",
                           "encoder.blocks.0.hook_resid_pre", "encoder.blocks.1.attn.hook_pattern",
                           "encoder.blocks.1.mlp.hook_post", "encoder.blocks.1.hook_resid_post",
                           "ctc.hook_logits"}) {
    EXPECT_TRUE(has(names, name)) << name;
  }
  EXPECT_FALSE(has(names, "encoder.ln_final.hook_normalized"));
  EXPECT_EQ(names.back(), "ctc.hook_logits");
  EXPECT_EQ(model->family(), "hubert");
  EXPECT_TRUE(model->can_transcribe());
  EXPECT_EQ(model->config_json()["samples_per_frame"], 20);
}

TEST(HookedHubert, ForwardGivesLogitsAndHooksSeeValidFrames) {
  const auto dir = fixture("ctc");
  REQUIRE_FIXTURE(dir);
  auto model = HookedHubert::from_pretrained(dir);
  auto wave = at::randn({2, 1600});
  auto lengths = at::tensor(std::vector<int64_t>{1600, 1000}, at::kLong);
  at::Tensor seen_lengths;
  int64_t pattern_calls = 0;
  hooks::HookScope scope(model->hooks());
  scope.add("encoder.blocks.1.hook_resid_post", [&](const at::Tensor&, hooks::HookContext& ctx) {
    seen_lengths = ctx.valid_lengths();
    return std::optional<at::Tensor>();
  });
  scope.add("encoder.blocks.*.attn.hook_pattern", [&](const at::Tensor& pattern, hooks::HookContext&) {
    ++pattern_calls;
    EXPECT_EQ(pattern.size(1), 4);
    return std::optional<at::Tensor>();
  });
  auto logits = model->forward({wave, {}, lengths});
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, model->frames_for_samples(1600), 12}));
  ASSERT_TRUE(seen_lengths.defined());
  EXPECT_EQ(seen_lengths[0].item<int64_t>(), model->frames_for_samples(1600));
  EXPECT_EQ(seen_lengths[1].item<int64_t>(), model->frames_for_samples(1000));
  EXPECT_EQ(pattern_calls, 2);
  // HF's formula: floor((L - k) / s) + 1 per conv (k = 10, 3, 3; s = 5, 2, 2).
  EXPECT_EQ(model->frames_for_samples(1600), 79);
  EXPECT_EQ(model->frames_for_samples(40), 1);  // the receptive field: 10 + 2 * 5 + 2 * 10
  EXPECT_EQ(model->frames_for_samples(39), 0);
  EXPECT_EQ(model->transcribe({at::randn({1600})}).size(), 1u);
}

TEST(HookedHubert, StableLegacyWeightNormCheckpointLoads) {
  const auto dir = fixture("stable");
  REQUIRE_FIXTURE(dir);
  auto model = HookedHubert::from_pretrained(dir);
  const auto& names = model->hook_names();
  EXPECT_TRUE(has(names, "encoder.ln_final.hook_normalized"));
  EXPECT_FALSE(has(names, "encoder.ln_pre.hook_normalized"));
  EXPECT_FALSE(has(names, "ctc.hook_logits"));
  EXPECT_EQ(model->family(), "wav2vec2");
  auto hidden = model->forward({at::randn({1, 800}), {}, {}});
  EXPECT_EQ(hidden.size(2), 32);
  EXPECT_TRUE(at::isfinite(hidden).all().item<bool>());
  EXPECT_THROW(model->transcribe({at::randn({800})}), InvalidInput);
}

TEST(HookedHubert, MisshapedCheckpointNamesTheTensorAndBothShapes) {
  const auto dir = fixture("misshaped");
  REQUIRE_FIXTURE(dir);
  try {
    HookedHubert::from_pretrained(dir);
    FAIL() << "a mis-shaped checkpoint loaded";
  } catch (const InvalidInput& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("hubert.encoder.layers.1.feed_forward.intermediate_dense.weight"), std::string::npos)
        << message;
    EXPECT_NE(message.find("64, 32"), std::string::npos) << message;
    EXPECT_NE(message.find("63, 32"), std::string::npos) << message;
  }
}

TEST(HookedHubert, BadInputsThrowInvalidInput) {
  const auto dir = fixture("ctc");
  REQUIRE_FIXTURE(dir);
  auto model = HookedHubert::from_pretrained(dir);
  EXPECT_THROW(model->forward({at::randn({1600}), {}, {}}), InvalidInput);
  EXPECT_THROW(model->forward({at::randn({1, 10}), {}, {}}), InvalidInput);
  EXPECT_THROW(model->forward({at::randn({2, 1600}), {}, at::tensor(std::vector<int64_t>{1600, 0})}), InvalidInput);
  EXPECT_THROW(model->forward({at::randn({2, 1600}), {}, at::tensor(std::vector<int64_t>{1601, 10})}), InvalidInput);
  EXPECT_THROW(model->forward({at::zeros({1, 1600}, at::kLong), {}, {}}), InvalidInput);
}

TEST(CtcDecoder, CollapsesRepeatsDropsBlanksAndSplitsWords) {
  nlohmann::json vocab = {{"<pad>", 0}, {"<s>", 1}, {"</s>", 2}, {"<unk>", 3}, {"|", 4}, {"A", 5}, {"B", 6}};
  text::CtcDecoder decoder(vocab);
  EXPECT_EQ(decoder.blank_id(), 0);
  EXPECT_EQ(decoder.decode({0, 5, 5, 0, 5, 4, 4, 6, 6, 0, 4}), "AA B");
  EXPECT_EQ(decoder.decode({5, 3, 5}), "A<unk>A");
  EXPECT_EQ(decoder.decode({5, 3, 5}, /*skip_special_tokens=*/true), "A");
  EXPECT_EQ(decoder.decode({}), "");
  EXPECT_THROW(decoder.decode({7}), InvalidInput);
  EXPECT_THROW(text::CtcDecoder(nlohmann::json{{"en", vocab}}), InvalidInput);
  EXPECT_THROW(text::CtcDecoder(nlohmann::json{{"A", 0}}), InvalidInput);  // no pad token
  auto ids = text::greedy_ids(at::eye(3).unsqueeze(0).repeat({2, 1, 1}), at::tensor(std::vector<int64_t>{3, 1}));
  EXPECT_EQ(ids[0], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(ids[1], (std::vector<int64_t>{0}));
}

}  // namespace
}  // namespace speechlens::models
