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
  // model.safetensors.index.json). Tensors stay memory-mapped until taken.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const;
  const nlohmann::json& config() const;
  // Optional side files (preprocessor_config.json, generation_config.json, ...); null JSON when
  // the file does not exist.
  nlohmann::json read_json(const std::string& filename) const;

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  // The tensor as stored (a zero-copy view of the mapping where alignment allows).
  at::Tensor get(const std::string& name) const;

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
  // checkpoint but never taken) and mis-shaped tensor.
  void finish() const;

  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  Checkpoint checkpoint_;
  Options options_;
  std::set<std::string> taken_;
  std::vector<std::string> missing_;
  std::vector<std::string> misshaped_;
};

}  // namespace speechlens::io
