#include "speechlens/io/ctranslate2.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>

#include "io/io_test_util.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/models/whisper.h"
#include "speechlens/util/error.h"

namespace speechlens::io {
namespace {

using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

std::span<const std::byte> as_bytes(const std::string& text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

void expect_invalid(const std::string& bytes, const std::string& expected) {
  try {
    CTranslate2Model::parse(as_bytes(bytes), "test.bin");
    ADD_FAILURE() << "parsed bytes that should be rejected (" << expected << ")";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find(expected), std::string::npos)
        << "message: " << error.what() << "\nexpected to contain: " << expected;
  }
}

// Raw model.bin pieces, to build hostile files byte by byte.
template <typename T>
std::string le(T value) {
  std::string bytes(sizeof(T), '\0');
  std::memcpy(bytes.data(), &value, sizeof(T));
  return bytes;
}
std::string str(const std::string& text) { return le<uint16_t>(text.size() + 1) + text + '\0'; }
std::string header(uint32_t count, uint32_t version = 6) {
  return le<uint32_t>(version) + str("TestSpec") + le<uint32_t>(1) + le<uint32_t>(count);
}
// One float32 [2] variable "w" = {1, 2}.
std::string small_variable(const std::string& name = "w") {
  return str(name) + le<uint8_t>(1) + le<uint32_t>(2) + le<uint8_t>(0) + le<uint32_t>(8) + le<float>(1) + le<float>(2);
}

TEST(CTranslate2Test, RoundTripsEveryStoredDtypeAndAliases) {
  ScratchDir dir;
  const auto f32 = at::randn({3, 4});
  const auto f16 = at::randn({5}).to(at::kHalf);
  const auto bf16 = at::randn({2, 2}).to(at::kBFloat16);
  const auto int8 = at::tensor({1, -2, 3, 127, -127, 0}, at::kChar).reshape({2, 3});
  const auto int8_scale = at::tensor({2.0f, 0.5f});
  const auto int16 = at::tensor({1000, -1000}, at::kShort);
  const auto scalar = at::scalar_tensor(6, at::kShort);
  save_ctranslate2_model(dir / "model.bin", "WhisperSpec", 3,
                         {{"a/f32", f32}, {"a/f16", f16}, {"a/bf16", bf16}, {"q/weight", int8},
                          {"q/weight_scale", int8_scale}, {"r/weight", int16},
                          {"r/weight_scale", at::scalar_tensor(100.0f)}, {"num_heads", scalar}},
                         {{"alias/f32", "a/f32"}});
  const auto model = CTranslate2Model::read(dir.path());  // a folder resolves to its model.bin
  EXPECT_EQ(model.binary_version(), 6u);
  EXPECT_EQ(model.spec_name(), "WhisperSpec");
  EXPECT_EQ(model.spec_revision(), 3u);
  EXPECT_EQ(model.names().size(), 8u);
  EXPECT_TRUE(at::equal(model.get("a/f32"), f32));
  EXPECT_TRUE(at::equal(model.get("alias/f32"), f32));
  EXPECT_TRUE(at::equal(model.get("a/f16"), f16));
  EXPECT_TRUE(at::equal(model.get("a/bf16"), bf16));
  EXPECT_EQ(model.get("a/f16").scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(model.get_float("a/f16"), f16.to(at::kFloat)));
  // int8 is per-row: value / scale[row].
  const auto expected_int8 = int8.to(at::kFloat) / int8_scale.unsqueeze(1);
  EXPECT_TRUE(at::allclose(model.get_float("q/weight"), expected_int8));
  EXPECT_TRUE(at::allclose(model.get_float("r/weight"), at::tensor({10.0f, -10.0f})));
  EXPECT_EQ(model.get_int("num_heads"), 6);
  EXPECT_EQ(model.aliases().at("alias/f32"), "a/f32");
  // Re-saving what was read gives the same bytes.
  save_ctranslate2_model(dir / "again.bin", model.spec_name(), model.spec_revision(), model.variables(),
                         model.aliases());
  EXPECT_EQ(read_bytes(dir / "model.bin"), read_bytes(dir / "again.bin"));
}

TEST(CTranslate2Test, ReadsOldBinaryVersions) {
  // Version 1: no spec; version 3: item size + element count instead of dtype + bytes.
  const std::string v1 = le<uint32_t>(1) + le<uint32_t>(1) + str("w") + le<uint8_t>(1) + le<uint32_t>(2) +
                         le<uint8_t>(4) + le<uint32_t>(2) + le<float>(1) + le<float>(2);
  const auto model1 = CTranslate2Model::parse(as_bytes(v1), "v1");
  EXPECT_EQ(model1.spec_revision(), 1u);
  EXPECT_TRUE(at::equal(model1.get("w"), at::tensor({1.0f, 2.0f})));
  const std::string v3 = header(1, 3) + str("w") + le<uint8_t>(1) + le<uint32_t>(2) + le<uint8_t>(2) +
                         le<uint32_t>(2) + le<int16_t>(7) + le<int16_t>(-7) + le<uint32_t>(0);
  EXPECT_TRUE(at::equal(CTranslate2Model::parse(as_bytes(v3), "v3").get("w"), at::tensor({7, -7}, at::kShort)));
}

TEST(CTranslate2Test, EveryTruncationIsAnError) {
  const std::string whole = header(2) + small_variable("w") + small_variable("v") + le<uint32_t>(1) + str("x") + str("w");
  ASSERT_NO_THROW(CTranslate2Model::parse(as_bytes(whole), "whole"));
  for (size_t length = 0; length < whole.size(); ++length) {
    EXPECT_THROW(CTranslate2Model::parse(as_bytes(whole.substr(0, length)), "cut"), InvalidInput) << length;
  }
}

TEST(CTranslate2Test, HostileFilesFailWithClearMessages) {
  expect_invalid("", "truncated: the binary version needs 4 bytes");
  expect_invalid(le<uint32_t>(0), "binary version 0");
  expect_invalid(le<uint32_t>(99), "binary version 99");
  expect_invalid(le<uint32_t>(6) + le<uint16_t>(0), "the spec name at offset 4 has length 0");
  expect_invalid(le<uint32_t>(6) + le<uint16_t>(3) + "abc", "not NUL-terminated");
  expect_invalid(le<uint32_t>(6) + le<uint16_t>(4) + std::string("a\0b\0", 4), "holds a NUL byte");
  expect_invalid(le<uint32_t>(6) + le<uint16_t>(60000) + "x", "needs 60000 bytes");
  expect_invalid(header(0xffffffffu), "declares 4294967295 variables");
  expect_invalid(header(1) + str("") + std::string(20, '\0'), "has an empty name");
  expect_invalid(header(1) + str("w") + le<uint8_t>(200) + std::string(20, '\0'), "rank 200");
  // 0xffffffff^3 elements overflow 64 bits.
  expect_invalid(header(1) + str("w") + le<uint8_t>(3) + le<uint32_t>(0xffffffffu) + le<uint32_t>(0xffffffffu) +
                     le<uint32_t>(0xffffffffu) + le<uint8_t>(0) + le<uint32_t>(0),
                 "overflows");
  expect_invalid(header(1) + str("w") + le<uint8_t>(1) + le<uint32_t>(2) + le<uint8_t>(9) + le<uint32_t>(8) +
                     std::string(8, '\0'),
                 "unknown dtype id 9");
  expect_invalid(header(1) + str("w") + le<uint8_t>(1) + le<uint32_t>(2) + le<uint8_t>(0) + le<uint32_t>(4) +
                     std::string(4, '\0'),
                 "needs 8 bytes but declares 4");
  // A byte count larger than the file: reported, never read.
  expect_invalid(header(1) + str("w") + le<uint8_t>(1) + le<uint32_t>(0x40000000u) + le<uint8_t>(0) +
                     le<uint32_t>(0) + std::string(4, '\0'),
                 "needs 4294967296 bytes but declares 0");
  expect_invalid(header(1) + str("w") + le<uint8_t>(1) + le<uint32_t>(0x10000000u) + le<uint8_t>(0) +
                     le<uint32_t>(0x40000000u),
                 "truncated: the data of variable 'w' needs 1073741824 bytes");
  expect_invalid(header(2) + small_variable("w") + small_variable("w") + le<uint32_t>(0), "'w' occurs twice");
  expect_invalid(header(1) + small_variable() + le<uint32_t>(1) + str("x") + str("nope"),
                 "alias 'x' names 'nope', which the file does not hold");
  expect_invalid(header(1) + small_variable() + le<uint32_t>(1) + str("w") + str("w"), "repeats a name");
  expect_invalid(header(1) + small_variable() + le<uint32_t>(0xfffffff0u), "declares 4294967280 aliases");
  expect_invalid(header(1) + small_variable() + le<uint32_t>(0) + "junk", "4 unexpected bytes follow");
}

TEST(CTranslate2Test, ReadingMissingFileIsAnIoError) {
  EXPECT_THROW(CTranslate2Model::read("/nonexistent/model.bin"), IoError);
}

TEST(CTranslate2Test, UnknownNamesSuggestSiblings) {
  const auto model = CTranslate2Model::parse(as_bytes(header(1) + small_variable("enc/w") + le<uint32_t>(0)), "m");
  try {
    model.get("enc/x");
    ADD_FAILURE();
  } catch (const NameError& error) {
    EXPECT_NE(std::string(error.what()).find("near names: enc/w"), std::string::npos) << error.what();
  }
  EXPECT_THROW(model.get_float("enc/missing"), NameError);
}

TEST(CTranslate2Test, QuantizedWithoutScaleIsRejected) {
  ScratchDir dir;
  save_ctranslate2_model(dir / "model.bin", "S", 1, {{"w", at::ones({2}, at::kChar)}, {"z/weight", at::ones({2}, at::kChar)}, {"z/weight_scale", at::zeros({2})}});
  const auto model = CTranslate2Model::read(dir / "model.bin");
  EXPECT_THROW(model.get_float("w"), InvalidInput);
  EXPECT_THROW(model.get_float("z/weight"), InvalidInput);  // zero scale: non-finite values
}

// --- Whisper --------------------------------------------------------------------------------

constexpr int64_t D = 8, kMels = 4, kVocab = 12, kFfn = 16, kSource = 6, kTarget = 5, kHeads = 2;

std::vector<std::pair<std::string, at::Tensor>> tiny_whisper_spec() {
  std::vector<std::pair<std::string, at::Tensor>> v;
  auto half = [](std::vector<int64_t> shape) { return at::randn(shape).to(at::kHalf); };
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    v.emplace_back(name + "/weight", half({out, in}));
    v.emplace_back(name + "/bias", half({out}));
  };
  auto norm = [&](const std::string& name) {
    v.emplace_back(name + "/gamma", half({D}));
    v.emplace_back(name + "/beta", half({D}));
  };
  v.emplace_back("decoder/activation", at::scalar_tensor(3, at::kChar));
  v.emplace_back("decoder/pre_norm", at::scalar_tensor(1, at::kChar));
  v.emplace_back("decoder/num_heads", at::scalar_tensor(kHeads, at::kShort));
  v.emplace_back("encoder/num_heads", at::scalar_tensor(kHeads, at::kShort));
  v.emplace_back("encoder/conv1/weight", half({D, kMels, 3}));
  v.emplace_back("encoder/conv1/bias", half({D}));
  v.emplace_back("encoder/conv2/weight", half({D, D, 3}));
  v.emplace_back("encoder/conv2/bias", half({D}));
  v.emplace_back("encoder/position_encodings/encodings", half({kSource, D}));
  norm("encoder/layer_0/self_attention/layer_norm");
  linear("encoder/layer_0/self_attention/linear_0", 3 * D, D);
  linear("encoder/layer_0/self_attention/linear_1", D, D);
  norm("encoder/layer_0/ffn/layer_norm");
  linear("encoder/layer_0/ffn/linear_0", kFfn, D);
  linear("encoder/layer_0/ffn/linear_1", D, kFfn);
  norm("encoder/layer_norm");
  v.emplace_back("decoder/embeddings/weight", half({kVocab, D}));
  v.emplace_back("decoder/position_encodings/encodings", half({kTarget, D}));
  norm("decoder/layer_0/self_attention/layer_norm");
  linear("decoder/layer_0/self_attention/linear_0", 3 * D, D);
  linear("decoder/layer_0/self_attention/linear_1", D, D);
  norm("decoder/layer_0/attention/layer_norm");
  linear("decoder/layer_0/attention/linear_0", D, D);
  linear("decoder/layer_0/attention/linear_1", 2 * D, D);
  linear("decoder/layer_0/attention/linear_2", D, D);
  norm("decoder/layer_0/ffn/layer_norm");
  linear("decoder/layer_0/ffn/linear_0", kFfn, D);
  linear("decoder/layer_0/ffn/linear_1", D, kFfn);
  norm("decoder/layer_norm");
  return v;
}

at::Tensor find(const std::vector<std::pair<std::string, at::Tensor>>& items, const std::string& name) {
  for (const auto& [n, t] : items) {
    if (n == name) return t;
  }
  return {};
}

void write_tiny_whisper_folder(const std::filesystem::path& dir,
                               const std::vector<std::pair<std::string, at::Tensor>>& variables) {
  save_ctranslate2_model(dir / "model.bin", "WhisperSpec", 3, variables,
                         {{"decoder/projection/weight", "decoder/embeddings/weight"}});
  // Ids 0-5 ordinary tokens, then the specials an English-only Whisper has.
  std::ofstream vocabulary(dir / "vocabulary.txt");
  vocabulary << "a\nb\nc\nd\ne\nf\n<|endoftext|>\n<|startoftranscript|>\n<|startofprev|>\n<|nocaptions|>\n"
                "<|notimestamps|>\n<|startoflm|>\n";
  std::ofstream(dir / "config.json") << R"({"suppress_ids": [1, 2], "suppress_ids_begin": [0, 6],
                                            "alignment_heads": [[0, 1]], "lang_ids": []})";
}

TEST(CTranslate2WhisperTest, MapsToHfNamesSplittingFusedProjections) {
  const auto variables = tiny_whisper_spec();
  ScratchDir dir;
  write_tiny_whisper_folder(dir.path(), variables);
  const auto model = CTranslate2Model::read(dir / "model.bin");
  const auto state = whisper_hf_state_dict(model);
  auto ct2 = [&](const std::string& name) { return find(variables, name).to(at::kFloat); };
  const auto qkv = ct2("encoder/layer_0/self_attention/linear_0/weight");
  EXPECT_TRUE(at::equal(find(state, "model.encoder.layers.0.self_attn.q_proj.weight"), qkv.narrow(0, 0, D)));
  EXPECT_TRUE(at::equal(find(state, "model.encoder.layers.0.self_attn.k_proj.weight"), qkv.narrow(0, D, D)));
  EXPECT_TRUE(at::equal(find(state, "model.encoder.layers.0.self_attn.v_proj.weight"), qkv.narrow(0, 2 * D, D)));
  EXPECT_TRUE(at::equal(find(state, "model.encoder.layers.0.self_attn.v_proj.bias"),
                        ct2("encoder/layer_0/self_attention/linear_0/bias").narrow(0, 2 * D, D)));
  EXPECT_FALSE(find(state, "model.encoder.layers.0.self_attn.k_proj.bias").defined());
  const auto kv = ct2("decoder/layer_0/attention/linear_1/weight");
  EXPECT_TRUE(at::equal(find(state, "model.decoder.layers.0.encoder_attn.k_proj.weight"), kv.narrow(0, 0, D)));
  EXPECT_TRUE(at::equal(find(state, "model.decoder.layers.0.encoder_attn.v_proj.weight"), kv.narrow(0, D, D)));
  EXPECT_TRUE(at::equal(find(state, "model.decoder.layers.0.encoder_attn.q_proj.weight"),
                        ct2("decoder/layer_0/attention/linear_0/weight")));
  EXPECT_TRUE(at::equal(find(state, "model.decoder.layers.0.encoder_attn_layer_norm.weight"),
                        ct2("decoder/layer_0/attention/layer_norm/gamma")));
  EXPECT_TRUE(at::equal(find(state, "model.decoder.layers.0.fc2.weight"), ct2("decoder/layer_0/ffn/linear_1/weight")));
  EXPECT_FALSE(find(state, "proj_out.weight").defined());  // tied through the alias
  EXPECT_EQ(find(state, "model.encoder.conv1.weight").scalar_type(), at::kFloat);
}

TEST(CTranslate2WhisperTest, DequantizesInt8WeightsWithTheirScales) {
  // CTranslate2's int8 layout: round(weight * scale) per row, scale = 127 / max|row|.
  auto variables = tiny_whisper_spec();
  const std::string name = "encoder/layer_0/ffn/linear_0/weight";
  const auto original = find(variables, name).to(at::kFloat);
  for (auto& [n, tensor] : variables) {
    if (n != name) continue;
    const auto weight = tensor.to(at::kFloat);
    const auto scale = 127.0 / weight.abs().amax(1);
    tensor = at::round(weight * scale.unsqueeze(1)).to(at::kChar);
    variables.emplace_back(name + "_scale", scale.to(at::kFloat));
    break;
  }
  ScratchDir dir;
  save_ctranslate2_model(dir / "model.bin", "WhisperSpec", 3, variables);
  const auto model = CTranslate2Model::read(dir / "model.bin");
  const auto state = whisper_hf_state_dict(model);  // the scale counts as used, not as unknown
  const auto fc1 = find(state, "model.encoder.layers.0.fc1.weight");
  EXPECT_TRUE(at::equal(fc1, model.get_float(name)));
  // Rounding moves each value by at most half a step, max|row| / 254.
  const auto half_step = original.abs().amax(1, true) / 254.0;
  EXPECT_TRUE(((fc1 - original).abs() <= half_step * 1.0001).all().item<bool>());
}

TEST(CTranslate2WhisperTest, ConvertsIntoAFolderHookedWhisperLoads) {
  const auto variables = tiny_whisper_spec();
  ScratchDir dir;
  write_tiny_whisper_folder(dir.path(), variables);
  const auto out = dir / "hf";
  convert_ctranslate2_whisper(dir.path(), out);
  const auto checkpoint = Checkpoint::open(out);
  const auto& config = checkpoint.config();
  EXPECT_EQ(config.at("d_model"), D);
  EXPECT_EQ(config.at("num_mel_bins"), kMels);
  EXPECT_EQ(config.at("vocab_size"), kVocab);
  EXPECT_EQ(config.at("encoder_attention_heads"), kHeads);
  EXPECT_EQ(config.at("encoder_ffn_dim"), kFfn);
  EXPECT_EQ(config.at("max_source_positions"), kSource);
  EXPECT_EQ(config.at("max_target_positions"), kTarget);
  EXPECT_EQ(config.at("decoder_start_token_id"), 7);
  EXPECT_EQ(config.at("eos_token_id"), 6);
  const auto generation = checkpoint.read_json("generation_config.json");
  EXPECT_EQ(generation.at("forced_decoder_ids"), nlohmann::json::parse("[[1, 10]]"));
  EXPECT_EQ(generation.at("suppress_tokens"), nlohmann::json::parse("[1, 2]"));
  EXPECT_EQ(generation.at("begin_suppress_tokens"), nlohmann::json::parse("[0, 6]"));
  EXPECT_EQ(generation.at("prev_sot_token_id"), 8);
  EXPECT_EQ(checkpoint.read_json("preprocessor_config.json").at("feature_size"), kMels);
  models::HookedWhisper whisper(checkpoint);
  models::ModelInputs inputs;
  inputs.features = at::randn({1, kMels, 2 * kSource});
  inputs.tokens = at::tensor({7, 10}, at::kLong).unsqueeze(0);
  auto logits = whisper.forward(inputs);
  EXPECT_EQ(logits.sizes(), at::IntArrayRef({1, 2, kVocab}));
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  EXPECT_THROW(convert_ctranslate2_whisper(dir.path(), out), InvalidInput);  // never overwrites
}

TEST(CTranslate2WhisperTest, RejectsWhatItCannotRepresent) {
  ScratchDir dir;
  auto variables = tiny_whisper_spec();
  variables[0].second = at::scalar_tensor(1, at::kChar);  // tanh-approximated GELU
  save_ctranslate2_model(dir / "a.bin", "WhisperSpec", 3, variables);
  try {
    whisper_hf_state_dict(CTranslate2Model::read(dir / "a.bin"));
    ADD_FAILURE();
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("'decoder/activation' is 1"), std::string::npos) << error.what();
  }
  variables = tiny_whisper_spec();
  variables.emplace_back("decoder/layernorm_embedding/gamma", at::ones({D}));
  save_ctranslate2_model(dir / "b.bin", "WhisperSpec", 3, variables);
  try {
    whisper_hf_state_dict(CTranslate2Model::read(dir / "b.bin"));
    ADD_FAILURE();
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("does not know: decoder/layernorm_embedding/gamma"), std::string::npos)
        << error.what();
  }
  save_ctranslate2_model(dir / "c.bin", "TransformerSpec", 1, tiny_whisper_spec());
  EXPECT_THROW(whisper_hf_state_dict(CTranslate2Model::read(dir / "c.bin")), InvalidInput);
  variables = tiny_whisper_spec();
  variables.erase(variables.begin() + 12);  // the fused qkv bias of encoder layer 0
  save_ctranslate2_model(dir / "d.bin", "WhisperSpec", 3, variables);
  EXPECT_THROW(whisper_hf_state_dict(CTranslate2Model::read(dir / "d.bin")), NameError);
}

}  // namespace
}  // namespace speechlens::io
