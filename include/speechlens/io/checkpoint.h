#pragma once
// Hugging Face checkpoint folders: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. The HF state-dict names are the source of truth; a model takes
// its tensors by name through a WeightLoader, which reports every missing, unexpected and
// mis-shaped tensor in one error instead of failing on the first.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace speechlens::io {

class SafetensorsFile;

class Checkpoint {
 public:
  // Opens `dir` (must contain config.json and either model.safetensors or
  // model.safetensors.index.json; like transformers, the single file wins when both exist).
  // Tensors stay memory-mapped until taken. Throws IoError when `dir` or a file cannot be read,
  // InvalidInput when a file is malformed, an index names a missing shard, a shard lacks a
  // tensor the index places in it, or a name occurs in two shards.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const;
  const nlohmann::json& config() const;
  // Optional side files (preprocessor_config.json, generation_config.json, ...); null JSON when
  // the file does not exist.
  nlohmann::json read_json(const std::string& filename) const;

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  // The tensor as stored (a zero-copy view of the mapping where alignment allows; see
  // SafetensorsFile::get for the copy-on-write rule). Unknown names throw NameError.
  at::Tensor get(const std::string& name) const;
  // The shard files, in the order of their names (one entry for a single model.safetensors).
  std::vector<std::filesystem::path> files() const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

// Hands a model its parameters by HF name, converting dtype/device on the way, and collects
// every problem so that finish() can report them all at once.
class WeightLoader {
 public:
  struct Options {
    std::optional<at::ScalarType> dtype;  // convert floating-point tensors; nullopt keeps them
    std::optional<at::Device> device;
  };
  explicit WeightLoader(const Checkpoint& checkpoint, Options options = {});

  // A required tensor of exactly `shape`. On a problem, records it and returns an empty tensor
  // of `shape` so construction can go on and report everything.
  at::Tensor take(const std::string& name, at::IntArrayRef shape);
  // A tensor that may be absent (e.g. a bias a config may omit): nullopt when absent.
  std::optional<at::Tensor> take_optional(const std::string& name, at::IntArrayRef shape);
  bool contains(const std::string& name) const;
  // Marks names the model deliberately does not use (e.g. HF buffers) as consumed.
  void ignore(const std::string& name);

  // Throws speechlens::InvalidInput naming every missing, unexpected (present in the
  // checkpoint but never taken nor ignored) and mis-shaped tensor, one per line.
  void finish() const;

  const Checkpoint& checkpoint() const { return checkpoint_; }
  const Options& options() const { return options_; }

 private:
  struct Misshaped {
    std::string name;
    std::vector<int64_t> expected;
    std::vector<int64_t> actual;
  };
  std::optional<at::Tensor> load(const std::string& name, at::IntArrayRef shape, bool required);
  at::Tensor placeholder(at::IntArrayRef shape) const;

  Checkpoint checkpoint_;
  Options options_;
  std::set<std::string> taken_;
  std::vector<std::string> missing_;
  std::vector<Misshaped> misshaped_;
};

}  // namespace speechlens::io
