// Qwen2-Audio pieces that need no checkpoint: the audio token count, the placeholder expansion,
// the chat template, positions over left padding, and per-item rotary positions. The model
// itself is compared with HF in tests/python/test_qwen2_audio_parity.py.
#include "speechlens/models/qwen2_audio.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "speechlens/models/layers/rotary.h"
#include "speechlens/models/qwen2_audio_processor.h"
#include "speechlens/util/error.h"

namespace speechlens::models {
namespace {

TEST(Qwen2AudioTest, TokenCountFollowsHfProcessor) {
  // HF: (((L - 1) // 2 + 1) - 2) // 2 + 1
  for (int64_t frames : {1, 2, 3, 4, 5, 35, 60, 100, 2999, 3000}) {
    const int64_t conv = (frames - 1) / 2 + 1;
    const int64_t expected = conv >= 2 ? (conv - 2) / 2 + 1 : 0;
    EXPECT_EQ(qwen2_audio_token_count(frames), expected) << frames;
  }
  EXPECT_EQ(qwen2_audio_token_count(3000), 750);  // 30 s
}

TEST(Qwen2AudioTest, ExpandsEachPlaceholderToItsCount) {
  const std::string text = "a<|AUDIO|>b<|AUDIO|>c";
  EXPECT_EQ(Qwen2AudioProcessor::expand_audio_tokens(text, {2, 0}), "a<|AUDIO|><|AUDIO|>bc");
  EXPECT_EQ(Qwen2AudioProcessor::expand_audio_tokens("no audio", {}), "no audio");
  EXPECT_THROW(Qwen2AudioProcessor::expand_audio_tokens(text, {1}), InvalidInput);
}

TEST(Qwen2AudioTest, ChatTemplateIsTheInstructOne) {
  EXPECT_EQ(Qwen2AudioProcessor::chat_prompt("Hi?"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nHi?<|im_end|>\n<|im_start|>assistant\n");
  const auto two = Qwen2AudioProcessor::chat_prompt("Q", 2, "S");
  EXPECT_NE(two.find("system\nS<|im_end|>"), std::string::npos);
  EXPECT_NE(two.find("Audio 2: <|audio_bos|><|AUDIO|><|audio_eos|>\nQ"), std::string::npos);
}

TEST(Qwen2AudioTest, PositionsSkipLeftPadding) {
  auto mask = at::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, at::kLong).view({2, 5});
  auto positions = HookedQwen2Audio::positions_from_mask(mask);
  EXPECT_TRUE(at::equal(positions, at::tensor({0, 0, 0, 1, 2, 0, 1, 2, 3, 4}, at::kLong).view({2, 5})));
}

TEST(Qwen2AudioTest, RotaryPerItemPositionsEqualSharedOnes) {
  RotaryEmbedding rotary(8, 10000.0);
  auto x = at::randn({2, 3, 2, 8});
  auto shared = rotary.apply(x, at::arange(4, 7, at::kLong));
  auto per_item = rotary.apply(x, at::arange(4, 7, at::kLong).unsqueeze(0).repeat({2, 1}));
  EXPECT_TRUE(at::allclose(shared, per_item));
  // Item 1 shifted by two positions differs from item 0's rotation of the same input.
  auto shifted = rotary.apply(x, at::stack({at::arange(4, 7, at::kLong), at::arange(6, 9, at::kLong)}));
  EXPECT_TRUE(at::allclose(shifted[0], shared[0]));
  EXPECT_FALSE(at::allclose(shifted[1], shared[1]));
  EXPECT_THROW(rotary.apply(x, at::arange(4, at::kLong)), InvalidInput);
}

}  // namespace
}  // namespace speechlens::models
