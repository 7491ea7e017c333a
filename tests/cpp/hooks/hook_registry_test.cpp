#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <thread>

#include "speechlens/hooks/activation_cache.h"
#include "speechlens/hooks/hook_registry.h"
#include "speechlens/hooks/run_context.h"
#include "speechlens/util/error.h"

namespace sh = speechlens::hooks;

namespace {

// A two-layer stand-in for a model: each layer's output passes a hook point.
struct ToyModel {
  sh::HookRegistry registry;
  std::vector<sh::HookPoint*> points;
  ToyModel() {
    for (int i = 0; i < 2; ++i) {
      points.push_back(&registry.create("encoder.blocks." + std::to_string(i) + ".hook_resid_post",
                                        sh::Stack::encoder, i));
      points.push_back(&registry.create("encoder.blocks." + std::to_string(i) + ".attn.hook_pattern",
                                        sh::Stack::encoder, i));
    }
    points.push_back(&registry.create("hook_logits"));
  }
  at::Tensor forward(at::Tensor x) {
    for (auto* p : points) x = (*p)(x * 2);
    return x;
  }
};

}  // namespace

TEST(GlobMatch, MatchesShellStylePatterns) {
  EXPECT_TRUE(sh::glob_match("encoder.blocks.*.hook_resid_post", "encoder.blocks.11.hook_resid_post"));
  EXPECT_TRUE(sh::glob_match("*hook_pattern", "decoder.blocks.0.cross_attn.hook_pattern"));
  EXPECT_TRUE(sh::glob_match("encoder.blocks.[0-2].*", "encoder.blocks.2.ln1.hook_normalized"));
  EXPECT_FALSE(sh::glob_match("encoder.blocks.[0-2].*", "encoder.blocks.3.ln1.hook_normalized"));
  EXPECT_TRUE(sh::glob_match("hook_?ogits", "hook_logits"));
  EXPECT_FALSE(sh::glob_match("encoder.*", "decoder.blocks.0.hook_resid_pre"));
  EXPECT_TRUE(sh::glob_match("*", ""));
}

TEST(HookRegistry, SelectsByExactGlobRegexAndPredicate) {
  ToyModel model;
  EXPECT_EQ(model.registry.resolve("hook_logits").size(), 1u);
  EXPECT_EQ(model.registry.resolve("encoder.blocks.*.hook_resid_post").size(), 2u);
  EXPECT_EQ(model.registry.resolve(sh::HookSelector::regex(R"(blocks\.1\.)")).size(), 2u);
  auto pred = sh::HookSelector::predicate([](const std::string& n) { return n.find("pattern") != std::string::npos; });
  EXPECT_EQ(model.registry.resolve(pred).size(), 2u);
}

TEST(HookRegistry, UnknownNameSuggestsNearestNames) {
  ToyModel model;
  try {
    model.registry.resolve("encoder.blocks.0.hook_resid_psot");
    FAIL() << "expected NameError";
  } catch (const speechlens::NameError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("encoder.blocks.0.hook_resid_post"), std::string::npos) << message;
  }
  EXPECT_THROW(model.registry.add("decoder.*", [](const at::Tensor&, sh::HookContext&) { return std::nullopt; }),
               speechlens::NameError);
}

TEST(HookRegistry, ReplacingHookChangesTheForwardAndObservingDoesNot) {
  ToyModel model;
  auto x = at::ones({1, 3});
  auto clean = model.forward(x);
  int seen = 0;
  sh::HookScope scope(model.registry);
  scope.add("encoder.blocks.*.hook_resid_post", [&](const at::Tensor&, sh::HookContext& ctx) -> std::optional<at::Tensor> {
    ++seen;
    EXPECT_EQ(ctx.stack(), sh::Stack::encoder);
    return std::nullopt;
  });
  EXPECT_TRUE(at::equal(model.forward(x), clean));
  EXPECT_EQ(seen, 2);
  scope.add("hook_logits", [](const at::Tensor& t, sh::HookContext&) -> std::optional<at::Tensor> {
    return at::zeros_like(t);
  });
  EXPECT_TRUE(at::equal(model.forward(x), at::zeros_like(clean)));
}

TEST(HookScope, RemovesExactlyItsHooksEvenWhenTheForwardThrows) {
  ToyModel model;
  auto permanent = model.registry.add("hook_logits", [](const at::Tensor&, sh::HookContext&) { return std::nullopt; },
                                      sh::Direction::forward, /*permanent=*/true);
  try {
    sh::HookScope scope(model.registry);
    scope.add("encoder.blocks.0.hook_resid_post", [](const at::Tensor&, sh::HookContext&) -> std::optional<at::Tensor> {
      throw std::runtime_error("hook failed");
    });
    EXPECT_EQ(model.registry.hook_count(), 2u);
    model.forward(at::ones({2}));
    FAIL() << "the hook should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "hook failed");
  }
  EXPECT_EQ(model.registry.hook_count(), 1u);  // the permanent hook stays
  model.registry.reset();
  EXPECT_EQ(model.registry.hook_count(), 1u);
  model.registry.reset(/*including_permanent=*/true);
  EXPECT_EQ(model.registry.hook_count(), 0u);
  EXPECT_FALSE(model.points.back()->has_hooks());
}

TEST(HookPoint, RejectsReplacementsOfTheWrongShape) {
  ToyModel model;
  sh::HookScope scope(model.registry);
  scope.add("hook_logits", [](const at::Tensor& t, sh::HookContext&) -> std::optional<at::Tensor> {
    return at::zeros({t.size(0) + 1});
  });
  EXPECT_THROW(model.forward(at::ones({3})), speechlens::InvalidInput);
}

TEST(HookPoint, BackwardHooksSeeAndReplaceGradients) {
  ToyModel model;
  at::Tensor seen;
  sh::HookScope scope(model.registry);
  scope.add_backward("hook_logits", [&](const at::Tensor& grad, sh::HookContext& ctx) -> std::optional<at::Tensor> {
    EXPECT_EQ(ctx.direction, sh::Direction::backward);
    seen = grad.clone();
    return grad * 0;  // stop the gradient here
  });
  auto x = at::ones({3}).requires_grad_(true);
  model.forward(x).sum().backward();
  ASSERT_TRUE(seen.defined());
  EXPECT_TRUE(at::equal(seen, at::ones({3})));
  EXPECT_TRUE(at::equal(x.grad(), at::zeros({3})));
}

TEST(HookContext, PositionMaskFollowsTheCallsValidLengths) {
  ToyModel model;
  at::Tensor mask, pattern_mask;
  std::vector<sh::TimeAxis> pattern_axes;
  sh::HookScope scope(model.registry);
  scope.add("encoder.blocks.0.hook_resid_post", [&](const at::Tensor&, sh::HookContext& ctx) -> std::optional<at::Tensor> {
    mask = ctx.position_mask(4);
    return std::nullopt;
  });
  {
    sh::RunContext call(model.registry);
    call.state().set_lengths("encoder", at::tensor(std::vector<int64_t>{2, 4}));
    sh::RunGuard guard(call);
    model.forward(at::ones({2, 4}));
  }
  auto expected = at::stack({at::tensor({1, 1, 0, 0}), at::tensor({1, 1, 1, 1})}).gt(0);
  EXPECT_TRUE(at::equal(mask, expected));
  // The lengths belonged to that call: a call without them sees every position as valid.
  model.forward(at::ones({2, 4}));
  EXPECT_FALSE(mask.defined());
}

TEST(RunContext, CallHooksAreSeenByTheirCallOnly) {
  ToyModel model;
  int seen = 0;
  {
    sh::RunContext call(model.registry);
    call.add_hook("hook_logits", [&](const at::Tensor& x, sh::HookContext&) -> std::optional<at::Tensor> {
      ++seen;
      return x * 0;
    });
    sh::RunGuard guard(call);
    EXPECT_TRUE(at::equal(model.forward(at::ones({3})), at::zeros({3})));
    // A nested call (a model call made from inside a hook) has its own, empty, context.
    sh::RunContext inner(model.registry);
    sh::RunGuard inner_guard(inner);
    EXPECT_TRUE(at::equal(model.forward(at::ones({3})), at::full({3}, 32.0)));
  }
  EXPECT_EQ(seen, 1);
  EXPECT_TRUE(at::equal(model.forward(at::ones({3})), at::full({3}, 32.0)));
  EXPECT_EQ(model.registry.hook_count(), 0u);
}

TEST(RunContext, ContextsOfOtherThreadsAreInvisible) {
  ToyModel model;
  sh::RunContext call(model.registry);
  call.add_hook("hook_logits", [](const at::Tensor& x, sh::HookContext&) -> std::optional<at::Tensor> { return x * 0; });
  sh::RunGuard guard(call);
  at::Tensor other;
  std::thread thread([&] { other = model.forward(at::ones({2})); });
  thread.join();
  EXPECT_TRUE(at::equal(other, at::full({2}, 32.0)));
  EXPECT_TRUE(at::equal(model.forward(at::ones({2})), at::zeros({2})));
}

TEST(RunContext, StopRecordsTheActivationAndNothingFiresAfterIt) {
  ToyModel model;
  int later = 0;
  sh::HookScope scope(model.registry);
  scope.add("hook_logits", [&](const at::Tensor&, sh::HookContext&) -> std::optional<at::Tensor> {
    ++later;
    return std::nullopt;
  });
  sh::RunContext call(model.registry);
  call.set_stop("encoder.blocks.0.attn.hook_pattern");
  sh::RunGuard guard(call);
  model.forward(at::ones({2}));
  ASSERT_TRUE(call.stopped());
  EXPECT_TRUE(at::equal(call.stop_value(), at::full({2}, 4.0)));
  EXPECT_EQ(later, 0);
  EXPECT_THROW(call.set_stop("encoder.blocks.0.hook_resid_psot"), speechlens::NameError);
}

TEST(RunContext, StartMustBeABlockResidual) {
  ToyModel model;
  sh::RunContext call(model.registry);
  EXPECT_THROW(call.set_start("hook_logits", at::ones({1})), speechlens::InvalidInput);
  call.set_start("encoder.blocks.1.hook_resid_post", at::ones({1}));
  ASSERT_NE(call.start_in(sh::Stack::encoder), nullptr);
  EXPECT_EQ(call.start_in(sh::Stack::encoder)->block, 1);
  EXPECT_TRUE(call.start_in(sh::Stack::encoder)->after_block);
  EXPECT_EQ(call.start_in(sh::Stack::decoder), nullptr);
}

TEST(HookRegistry, RemovingHooksFromInsideAHookSkipsNothingElse) {
  ToyModel model;
  std::vector<int> order;
  std::vector<sh::HookId> ids;
  ids = model.registry.add("hook_logits", [&](const at::Tensor&, sh::HookContext&) -> std::optional<at::Tensor> {
    order.push_back(1);
    model.registry.reset();  // removes all three while the point is firing
    return std::nullopt;
  });
  model.registry.add("hook_logits", [&](const at::Tensor&, sh::HookContext&) -> std::optional<at::Tensor> {
    order.push_back(2);
    return std::nullopt;
  });
  EXPECT_NO_THROW(model.forward(at::ones({1})));
  // The hooks removed during the firing are not called afterwards, and nothing throws.
  EXPECT_EQ(order, std::vector<int>{1});
  EXPECT_EQ(model.registry.hook_count(), 0u);
  model.forward(at::ones({1}));
  EXPECT_EQ(order, std::vector<int>{1});
}

TEST(HookRegistry, RemoveWhereSelectsPointDirectionAndPermanence) {
  ToyModel model;
  auto noop = [](const at::Tensor&, sh::HookContext&) -> std::optional<at::Tensor> { return std::nullopt; };
  model.registry.add("encoder.blocks.0.*", noop);
  model.registry.add("encoder.blocks.0.hook_resid_post", noop, sh::Direction::backward);
  model.registry.add("hook_logits", noop, sh::Direction::forward, /*permanent=*/true);
  EXPECT_EQ(model.registry.hook_count(), 4u);
  EXPECT_EQ(model.registry.remove_where(sh::HookSelector("encoder.blocks.0.hook_resid_post"), sh::Direction::backward,
                                        false),
            1u);
  EXPECT_EQ(model.registry.remove_where(std::nullopt, std::nullopt, false), 2u);  // the permanent one stays
  EXPECT_EQ(model.registry.list().size(), 1u);
  EXPECT_TRUE(model.registry.list()[0].permanent);
  EXPECT_EQ(model.registry.remove_where(std::nullopt, std::nullopt, true), 1u);
}

TEST(HookSelector, ListsSelectTheUnionAndEveryMemberMustMatch) {
  ToyModel model;
  sh::HookSelector list(std::vector<std::string>{"hook_logits", "encoder.blocks.*.attn.hook_pattern"});
  EXPECT_EQ(model.registry.resolve(list),
            (std::vector<std::string>{"encoder.blocks.0.attn.hook_pattern", "encoder.blocks.1.attn.hook_pattern",
                                      "hook_logits"}));
  sh::HookSelector typo(std::vector<std::string>{"hook_logits", "hook_logts"});
  EXPECT_THROW(model.registry.resolve(typo), speechlens::NameError);
}

TEST(HookPoint, BackwardHookClosureOutlivesTheModel) {
  at::Tensor out;
  at::Tensor seen;
  auto x = at::ones({3}).requires_grad_(true);
  {
    auto model = std::make_unique<ToyModel>();
    model->registry.add("hook_logits", [&](const at::Tensor& grad, sh::HookContext& ctx) -> std::optional<at::Tensor> {
      EXPECT_EQ(ctx.name(), "hook_logits");
      seen = grad.clone();
      return std::nullopt;
    }, sh::Direction::backward);
    out = model->forward(x);
  }  // the model (registry, hook points) is gone; its autograd closures keep what they need
  out.sum().backward();
  ASSERT_TRUE(seen.defined());
  EXPECT_TRUE(at::equal(x.grad(), at::full({3}, 32.0)));
}

TEST(ActivationCache, RecordsStepsConvertsAndEnforcesItsCap) {
  ToyModel model;
  sh::CacheOptions options;
  options.dtype = at::kHalf;
  sh::ActivationCache cache(options);
  {
    sh::HookScope scope(model.registry);
    scope.add("encoder.blocks.*.hook_resid_post", cache.recorder());
    model.forward(at::ones({1, 4}));
    model.forward(at::ones({1, 4}));
  }
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.steps("encoder.blocks.0.hook_resid_post").size(), 2u);
  EXPECT_THROW(cache.get("encoder.blocks.0.hook_resid_post"), speechlens::InvalidInput);  // fired twice
  EXPECT_EQ(cache.steps("encoder.blocks.1.hook_resid_post")[0].scalar_type(), at::kHalf);
  EXPECT_THROW(cache.get("nope"), speechlens::NameError);

  sh::CacheOptions capped;
  capped.max_bytes = 20;
  sh::ActivationCache small(capped);
  sh::HookScope scope(model.registry);
  scope.add("encoder.blocks.*.hook_resid_post", small.recorder());
  EXPECT_THROW(model.forward(at::ones({1, 4})), speechlens::InvalidInput);
}

TEST(HookRegistry, ListsActivePointsInModelOrder) {
  ToyModel model;
  EXPECT_TRUE(model.registry.active_names().empty());
  sh::HookScope scope(model.registry);
  scope.add("hook_logits", [](const at::Tensor&, sh::HookContext&) { return std::nullopt; });
  scope.add("encoder.blocks.0.*", [](const at::Tensor&, sh::HookContext&) { return std::nullopt; });
  EXPECT_EQ(model.registry.active_names(),
            (std::vector<std::string>{"encoder.blocks.0.hook_resid_post", "encoder.blocks.0.attn.hook_pattern",
                                      "hook_logits"}));
}
