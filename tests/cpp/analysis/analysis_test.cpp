// C++ checks of the analysis toolkit: probes, streaming statistics and CKA on plain tensors, and
// patching invariants on the tiny Whisper fixture (tests/fixtures/analysis_fixtures.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "io/io_test_util.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "speechlens/analysis/lens.h"
#include "speechlens/analysis/patching.h"
#include "speechlens/analysis/probes.h"
#include "speechlens/analysis/stats.h"
#include "speechlens/models/whisper.h"
#include "speechlens/util/error.h"

namespace sla = speechlens::analysis;
using speechlens::models::HookedWhisper;
using speechlens::models::ModelInputs;

namespace {

std::filesystem::path tiny_whisper() { return speechlens::io::testing::test_data_dir() / "analysis" / "tiny_whisper"; }

std::pair<at::Tensor, at::Tensor> planted(int64_t n, int64_t d, int64_t classes) {
  at::manual_seed(0);
  at::Tensor x = at::randn({n, d});
  at::Tensor directions = at::randn({d, classes});
  return {x, x.mm(directions).argmax(1)};
}

}  // namespace

TEST(Probes, LogisticFindsPlantedFeatureAndControlStaysNearChance) {
  auto [x, y] = planted(600, 20, 3);
  sla::ProbeOptions options;
  options.l2 = 1e-4;
  options.max_iter = 2000;
  auto r = sla::train_probe(x, y, sla::ProbeKind::logistic, options);
  EXPECT_GE(r.test_score, 0.95);
  EXPECT_LT(r.control_score, 0.5);
  EXPECT_EQ(r.n_test, 150);
}

TEST(Probes, RidgeRecoversLinearTarget) {
  at::manual_seed(1);
  at::Tensor x = at::randn({300, 8});
  at::Tensor w = at::randn({8});
  at::Tensor y = x.mv(w) + 2.0;
  sla::ProbeOptions options;
  options.l2 = 1e-8;
  auto r = sla::train_probe(x, y, sla::ProbeKind::ridge, options);
  EXPECT_GT(r.test_score, 0.999999);
  EXPECT_TRUE(at::allclose(r.weight[0].to(at::kFloat), w, 0, 1e-4));
  EXPECT_NEAR(r.bias.item<double>(), 2.0, 1e-4);
}

TEST(Probes, BadInputThrows) {
  EXPECT_THROW(sla::train_probe(at::randn({10, 3}), at::randn({10}), sla::ProbeKind::logistic), speechlens::InvalidInput);
  EXPECT_THROW(sla::train_probe(at::randn({3, 3}), at::zeros({3}, at::kLong), sla::ProbeKind::logistic),
               speechlens::InvalidInput);
  EXPECT_THROW(sla::probe_kind_from_name("svm"), speechlens::InvalidInput);
}

TEST(NeuronStats, StreamedBatchesEqualOnePass) {
  at::manual_seed(2);
  at::Tensor x = at::randn({100, 5}).to(at::kDouble) * 3 + 1;
  at::Tensor labels = at::randint(0, 3, {100});
  sla::NeuronStats streamed(3, 5), once(3, 5);
  for (int64_t s = 0; s < 100; s += 7) {
    const int64_t n = std::min<int64_t>(7, 100 - s);
    streamed.update(x.narrow(0, s, n), labels.narrow(0, s, n));
  }
  once.update(x, labels);
  EXPECT_TRUE(at::allclose(streamed.mean(), once.mean(), 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(streamed.variance(), once.variance(), 1e-10, 1e-12));
  for (int64_t c = 0; c < 3; ++c) {
    at::Tensor rows = x.index_select(0, (labels == c).nonzero().squeeze(1));
    EXPECT_TRUE(at::allclose(once.mean()[c], rows.mean(0), 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(once.variance()[c], rows.var(0, false), 1e-10, 1e-12));
  }
  EXPECT_THROW(once.update(x, at::full({100}, 3, at::kLong)), speechlens::InvalidInput);
}

TEST(Cka, InvariantToRotationAndScaleAndMatchesDefinition) {
  at::manual_seed(3);
  at::Tensor x = at::randn({40, 6}, at::kDouble);
  at::Tensor q = std::get<0>(at::linalg_qr(at::randn({6, 6}, at::kDouble)));
  EXPECT_NEAR(sla::linear_cka(x, x.mm(q) * 4 + 1), 1.0, 1e-12);
  at::Tensor y = at::randn({40, 3}, at::kDouble);
  at::Tensor xc = x - x.mean(0, true), yc = y - y.mean(0, true);
  const double expected = xc.t().mm(yc).square().sum().item<double>() /
                          std::sqrt(xc.t().mm(xc).square().sum().item<double>() * yc.t().mm(yc).square().sum().item<double>());
  EXPECT_NEAR(sla::linear_cka(x, y), expected, 1e-12);
}

class PatchingOnTinyWhisper : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(tiny_whisper() / "config.json")) GTEST_FAIL() << "run tests/fixtures/make_fixtures.py";
    model = HookedWhisper::from_pretrained(tiny_whisper());
    at::manual_seed(4);
    at::Tensor mel = at::randn({1, 8, 16});
    at::Tensor noisy = mel.clone();
    noisy.narrow(2, 4, 6).copy_(at::randn({1, 8, 6}));
    at::Tensor tokens = at::tensor({1, 5, 9, 14, 3}, at::kLong).unsqueeze(0);
    clean = {mel, tokens, {}};
    corrupted = {noisy, tokens, {}};
  }
  static at::Tensor metric(const at::Tensor& logits) {
    return logits.select(1, 3).select(1, 11) - logits.select(1, 3).select(1, 40);
  }
  std::unique_ptr<HookedWhisper> model;
  ModelInputs clean, corrupted;
};

TEST_F(PatchingOnTinyWhisper, ChunkingDoesNotChangeResults) {
  sla::PatchingOptions small, large;
  small.max_batch = 3;
  large.max_batch = 64;
  auto a = sla::activation_patching(*model, clean, corrupted, "encoder.blocks.*.hook_resid_pre", metric, small);
  auto b = sla::activation_patching(*model, clean, corrupted, "encoder.blocks.*.hook_resid_pre", metric, large);
  EXPECT_TRUE(at::allclose(a.values, b.values, 0, 1e-5));
  EXPECT_EQ(a.values.size(0), 2);
  EXPECT_EQ(a.values.size(1), 8);
  EXPECT_GT(a.forwards, b.forwards);
  EXPECT_EQ(model->hooks().hook_count(), 0u);
}

TEST_F(PatchingOnTinyWhisper, LastResidualRecoversCleanAndIdenticalInputsDoNothing) {
  sla::PatchingOptions whole;
  whole.axis = sla::SweepAxis::whole;
  whole.normalize = true;
  auto r = sla::activation_patching(*model, clean, corrupted, "decoder.blocks.1.hook_resid_post", metric, whole);
  EXPECT_NEAR(r.values[0].item<double>(), 1.0, 1e-6);
  auto same = sla::activation_patching(*model, clean, clean, "encoder.blocks.*.hook_resid_post", metric);
  EXPECT_TRUE(at::allclose(same.values, at::full_like(same.values, same.clean_metric), 0, 1e-6));
}

TEST_F(PatchingOnTinyWhisper, AttributionIsExactForLinearMetric) {
  auto logit = [](const at::Tensor& logits) { return logits.select(1, 3).select(1, 11); };
  auto exact = sla::activation_patching(*model, clean, corrupted, "decoder.ln_final.hook_normalized", logit);
  auto approx = sla::attribution_patching(*model, clean, corrupted, "decoder.ln_final.hook_normalized", logit);
  EXPECT_TRUE(at::allclose(exact.values, approx.values, 0, 1e-5));
}

TEST_F(PatchingOnTinyWhisper, MetricMustGiveOneValuePerItem) {
  auto bad = [](const at::Tensor& logits) { return logits.sum(); };
  EXPECT_THROW(sla::activation_patching(*model, clean, corrupted, "encoder.blocks.0.hook_resid_pre", bad),
               speechlens::InvalidInput);
  EXPECT_EQ(model->hooks().hook_count(), 0u);
}

TEST_F(PatchingOnTinyWhisper, LensLastRowIsTheModel) {
  auto lens = sla::logit_lens(*model, clean);
  at::Tensor logits = model->forward(clean);
  EXPECT_TRUE(at::allclose(lens.logits[-1], logits, 0, 1e-5));
  // The encoder lens at the last layer is the model itself.
  sla::LayerDecodeOptions options;
  options.layers = {1};
  options.generate = false;
  auto decoded = sla::decode_from_layers(*model, clean, options);
  EXPECT_TRUE(at::allclose(decoded.logits[0], logits, 0, 1e-5));
}
