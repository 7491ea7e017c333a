#include "speechlens/io/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "speechlens/io/safetensors.h"
#include "speechlens/util/error.h"

namespace speechlens::io {
namespace {

using testing::ScratchDir;
using testing::write_bytes;

using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

void write_config(const std::filesystem::path& dir) {
  write_bytes(dir / "config.json", R"({"model_type": "toy", "d_model": 4, "n_layers": 1})");
}

// A two-shard folder in the layout transformers writes.
void write_sharded(const std::filesystem::path& dir, const TensorList& first,
                   const TensorList& second) {
  write_config(dir);
  save_safetensors(dir / "model-00001-of-00002.safetensors", first);
  save_safetensors(dir / "model-00002-of-00002.safetensors", second);
  nlohmann::json index{{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, _] : first) index["weight_map"][name] = "model-00001-of-00002.safetensors";
  for (const auto& [name, _] : second) index["weight_map"][name] = "model-00002-of-00002.safetensors";
  write_bytes(dir / "model.safetensors.index.json", index.dump());
}

template <typename Error>
std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}

bool mentions(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos;
}

TEST(Checkpoint, OpensASingleFileFolder) {
  ScratchDir dir;
  write_config(dir.path());
  const at::Tensor weight = at::randn({4, 4});
  save_safetensors(dir / "model.safetensors", {{"layer.weight", weight}, {"layer.bias", at::zeros({4})}});

  const auto checkpoint = Checkpoint::open(dir.path());
  EXPECT_EQ(checkpoint.dir(), dir.path());
  EXPECT_EQ(checkpoint.config()["d_model"].get<int>(), 4);
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"layer.bias", "layer.weight"}));
  EXPECT_TRUE(checkpoint.contains("layer.weight"));
  EXPECT_FALSE(checkpoint.contains("layer.scale"));
  EXPECT_EQ(checkpoint.shape("layer.weight"), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(checkpoint.dtype("layer.weight"), at::kFloat);
  EXPECT_TRUE(at::equal(checkpoint.get("layer.weight"), weight));
  EXPECT_EQ(checkpoint.files().size(), 1u);
  EXPECT_THROW(checkpoint.get("layer.scale"), NameError);
  EXPECT_TRUE(checkpoint.read_json("generation_config.json").is_null());
  write_bytes(dir / "generation_config.json", R"({"max_length": 448})");
  EXPECT_EQ(checkpoint.read_json("generation_config.json")["max_length"].get<int>(), 448);
}

TEST(Checkpoint, OpensAShardedFolder) {
  ScratchDir dir;
  const at::Tensor a = at::randn({3});
  const at::Tensor b = at::arange(6, at::kLong).reshape({2, 3});
  write_sharded(dir.path(), {{"a", a}}, {{"b", b}, {"c", at::ones({1}, at::kHalf)}});
  const auto checkpoint = Checkpoint::open(dir.path());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(at::equal(checkpoint.get("a"), a));
  EXPECT_TRUE(at::equal(checkpoint.get("b"), b));
  EXPECT_EQ(checkpoint.dtype("c"), at::kHalf);
  EXPECT_EQ(checkpoint.files().size(), 2u);
  EXPECT_THROW(checkpoint.shape("d"), NameError);
}

TEST(Checkpoint, SingleFileWinsOverAnIndexLikeTransformers) {
  ScratchDir dir;
  write_sharded(dir.path(), {{"sharded", at::ones({1})}}, {{"other", at::ones({1})}});
  save_safetensors(dir / "model.safetensors", {{"single", at::ones({1})}});
  EXPECT_EQ(Checkpoint::open(dir.path()).names(), std::vector<std::string>{"single"});
}

TEST(Checkpoint, RejectsBrokenShardedFolders) {
  {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}}, {{"b", at::ones({1})}});
    std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "not in")) << message;
    EXPECT_TRUE(mentions(message, "model-00002-of-00002.safetensors")) << message;
  }
  {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}, {"b", at::ones({1})}}, {{"b", at::ones({1})}});
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "tensor \"b\" is stored in both")) << message;
  }
  {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}}, {{"b", at::ones({1})}});
    write_bytes(dir / "model.safetensors.index.json",
                R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                   "b": "model-00002-of-00002.safetensors",
                                   "ghost": "model-00002-of-00002.safetensors"}})");
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "does not hold: ghost")) << message;
  }
  for (const std::string escaping : {"../model.safetensors", "/etc/passwd", "sub/x.safetensors", ""}) {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}}, {{"b", at::ones({1})}});
    write_bytes(dir / "model.safetensors.index.json",
                nlohmann::json{{"weight_map", {{"a", escaping}}}}.dump());
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "expected the file name of a shard")) << message;
  }
  {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}}, {{"b", at::ones({1})}});
    write_bytes(dir / "model.safetensors.index.json",
                R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                   "a": "model-00002-of-00002.safetensors"}})");
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "repeats the key \"a\"")) << message;
  }
  {
    ScratchDir dir;
    write_sharded(dir.path(), {{"a", at::ones({1})}}, {{"b", at::ones({1})}});
    write_bytes(dir / "model.safetensors.index.json", R"({"metadata": {}})");
    const auto message = error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); });
    EXPECT_TRUE(mentions(message, "weight_map")) << message;
  }
}

TEST(Checkpoint, RejectsFoldersWithoutConfigOrWeights) {
  ScratchDir dir;
  EXPECT_THROW(Checkpoint::open(dir / "absent"), IoError);
  EXPECT_TRUE(mentions(error_message<IoError>([&] { Checkpoint::open(dir.path()); }),
                       "has no config.json"));
  write_bytes(dir / "config.json", "{not json");
  EXPECT_TRUE(mentions(error_message<InvalidInput>([&] { Checkpoint::open(dir.path()); }),
                       "is not valid JSON"));
  write_config(dir.path());
  EXPECT_TRUE(mentions(error_message<IoError>([&] { Checkpoint::open(dir.path()); }),
                       "has neither model.safetensors"));
  write_bytes(dir / "pytorch_model.bin", "pickle");
  EXPECT_TRUE(mentions(error_message<IoError>([&] { Checkpoint::open(dir.path()); }),
                       "safe_serialization=True"));
}

// ---------------------------------------------------------------------------------------------

TEST(WeightLoader, HandsOutTensorsAndConvertsOnlyFloatingDtypes) {
  ScratchDir dir;
  write_config(dir.path());
  const at::Tensor weight = at::randn({2, 3});
  save_safetensors(dir / "model.safetensors",
                   {{"w", weight}, {"ids", at::arange(4, at::kLong)}, {"buffer", at::ones({1})}});
  WeightLoader loader(Checkpoint::open(dir.path()), {.dtype = at::kBFloat16, .device = at::Device(at::kCPU)});
  const at::Tensor w = loader.take("w", {2, 3});
  EXPECT_EQ(w.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(w, weight.to(at::kBFloat16)));
  EXPECT_EQ(loader.take("ids", {4}).scalar_type(), at::kLong);
  EXPECT_FALSE(loader.take_optional("bias", {3}).has_value());
  EXPECT_TRUE(loader.contains("buffer"));
  loader.ignore("buffer");
  EXPECT_NO_THROW(loader.finish());
}

TEST(WeightLoader, KeepsZeroCopyViewsWhenNothingConverts) {
  ScratchDir dir;
  write_config(dir.path());
  save_safetensors(dir / "model.safetensors", {{"w", at::randn({8, 8})}});
  const auto checkpoint = Checkpoint::open(dir.path());
  WeightLoader loader(checkpoint);
  EXPECT_EQ(loader.take("w", {8, 8}).data_ptr(), checkpoint.get("w").data_ptr());
  loader.finish();
}

TEST(WeightLoader, FinishListsEveryProblemAtOnce) {
  ScratchDir dir;
  write_config(dir.path());
  save_safetensors(dir / "model.safetensors",
                   {{"encoder.fc1.weight", at::ones({4, 2})},
                    {"encoder.fc2.weight", at::ones({2, 4})},
                    {"encoder.fc1.bias", at::ones({3})},
                    {"decoder.extra", at::ones({1})},
                    {"decoder.other_extra", at::ones({1})},
                    {"lm_head.weight", at::ones({5, 2})}});
  WeightLoader loader(Checkpoint::open(dir.path()));
  const at::Tensor fc1 = loader.take("encoder.fc1.weight", {2, 4});  // transposed in the file
  EXPECT_EQ(fc1.sizes(), (at::IntArrayRef{2, 4}));  // a placeholder so construction goes on
  loader.take("encoder.fc2.weight", {2, 4});
  loader.take_optional("encoder.fc1.bias", {4});  // present but mis-shaped
  loader.take("encoder.fc3.weight", {2, 2});      // missing
  loader.take("encoder.fc3.weight", {2, 2});      // missing, reported once
  loader.take("encoder.fc4.weight", {2, 2});      // missing
  loader.take("lm_head.weight", {5, 2});

  const auto message = error_message<InvalidInput>([&] { loader.finish(); });
  EXPECT_TRUE(mentions(message, "2 missing, 2 unexpected, 2 mis-shaped")) << message;
  EXPECT_TRUE(mentions(message, "missing:    encoder.fc3.weight")) << message;
  EXPECT_TRUE(mentions(message, "missing:    encoder.fc4.weight")) << message;
  EXPECT_TRUE(mentions(message, "unexpected: decoder.extra")) << message;
  EXPECT_TRUE(mentions(message, "unexpected: decoder.other_extra")) << message;
  EXPECT_TRUE(mentions(message,
                       "mis-shaped: encoder.fc1.weight (model expects [2, 4], checkpoint has [4, 2])"))
      << message;
  EXPECT_TRUE(mentions(message, "mis-shaped: encoder.fc1.bias (model expects [4], checkpoint has [3])"))
      << message;
  EXPECT_FALSE(mentions(message, "fc2")) << message;
  EXPECT_FALSE(mentions(message, "lm_head")) << message;
}

// ---------------------------------------------------------------------------------------------

TEST(CheckpointFromPython, ReadsTheShardedFolderTransformersWrote) {
  const auto data_dir = testing::test_data_dir() / "io";
  if (!std::filesystem::exists(data_dir / "whisper_sharded_expected.safetensors")) {
    GTEST_FAIL() << "run tests/fixtures/make_fixtures.py and set SPEECHLENS_TEST_DATA";
  }
  const auto checkpoint = Checkpoint::open(data_dir / "whisper_sharded");
  const auto expected = SafetensorsFile::open(data_dir / "whisper_sharded_expected.safetensors");
  EXPECT_GE(checkpoint.files().size(), 2u);
  EXPECT_EQ(checkpoint.config()["model_type"].get<std::string>(), "whisper");
  EXPECT_FALSE(checkpoint.read_json("generation_config.json").is_null());
  ASSERT_EQ(checkpoint.names(), expected.names());
  WeightLoader loader(checkpoint, {.dtype = at::kDouble});
  for (const auto& name : expected.names()) {
    SCOPED_TRACE(name);
    const at::Tensor want = expected.get(name);
    const at::Tensor got = loader.take(name, want.sizes());
    EXPECT_TRUE(at::equal(got, want.to(at::kDouble)));
  }
  EXPECT_NO_THROW(loader.finish());
}

}  // namespace
}  // namespace speechlens::io
