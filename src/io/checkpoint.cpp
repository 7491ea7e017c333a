#include "speechlens/io/checkpoint.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "json_util.h"
#include "speechlens/io/safetensors.h"
#include "speechlens/util/error.h"

namespace speechlens::io {
namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string shape_string(at::IntArrayRef shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// An index is data from elsewhere: a shard name must stay inside the checkpoint folder.
bool is_plain_file_name(const std::string& name) {
  const std::filesystem::path path(name);
  return !name.empty() && path.is_relative() && path.has_filename() &&
         path.filename() == path && name != "." && name != "..";
}

}  // namespace

struct Checkpoint::State {
  std::filesystem::path dir;
  nlohmann::json config;
  std::vector<SafetensorsFile> shards;
  std::unordered_map<std::string, size_t> shard_of;  // tensor name -> index into shards

  const SafetensorsFile& shard_holding(const std::string& name) const {
    auto found = shard_of.find(name);
    if (found != shard_of.end()) return shards[found->second];
    // Let the file produce the NameError with near-name suggestions when there is one file.
    if (shards.size() == 1) shards.front().info(name);
    throw NameError(fmt::format("checkpoint {} has no tensor named \"{}\" ({} tensors in {} shards)",
                                dir.string(), name, shard_of.size(), shards.size()));
  }

  void add_shard(SafetensorsFile file) {
    const size_t index = shards.size();
    for (const auto& name : file.names()) {
      auto [where, inserted] = shard_of.emplace(name, index);
      if (!inserted) {
        throw InvalidInput(fmt::format(
            "checkpoint {}: tensor \"{}\" is stored in both {} and {}; a name must be unique "
            "across shards", dir.string(), name, shards[where->second].path().filename().string(),
            file.path().filename().string()));
      }
    }
    shards.push_back(std::move(file));
  }

  void open_sharded(const std::filesystem::path& index_path);
};

void Checkpoint::State::open_sharded(const std::filesystem::path& index_path) {
  const nlohmann::json index = detail::read_json_file(index_path, /*unique_keys=*/true);
  auto invalid = [&](const std::string& what) {
    throw InvalidInput(fmt::format("{}: {}", index_path.string(), what));
  };
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    invalid("expected an object with a \"weight_map\" object mapping tensor names to shard files");
  }
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>())) {
      invalid(fmt::format("the weight_map entry of \"{}\" is {}; expected the file name of a "
                          "shard in the same folder", name, shard.dump()));
    }
    names_by_shard[shard.get<std::string>()].push_back(name);
  }
  std::vector<std::string> absent;
  for (const auto& [shard, _] : names_by_shard) {
    if (!std::filesystem::is_regular_file(dir / shard)) absent.push_back(shard);
  }
  if (!absent.empty()) {
    invalid(fmt::format("the weight_map names shard files that are not in {}: {}", dir.string(),
                        fmt::join(absent, ", ")));
  }
  for (const auto& [shard, names] : names_by_shard) {
    SafetensorsFile file = SafetensorsFile::open(dir / shard);
    std::vector<std::string> not_in_shard;
    for (const auto& name : names) {
      if (!file.contains(name)) not_in_shard.push_back(name);
    }
    if (!not_in_shard.empty()) {
      invalid(fmt::format("the weight_map places {} tensor(s) in {} that it does not hold: {}",
                          not_in_shard.size(), shard, fmt::join(not_in_shard, ", ")));
    }
    add_shard(std::move(file));
  }
}

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    throw IoError(fmt::format("checkpoint folder {} does not exist or is not a folder",
                              dir.string()));
  }
  auto state = std::make_shared<State>();
  state->dir = dir;
  const auto config_path = dir / kConfigFile;
  if (!std::filesystem::exists(config_path)) {
    throw IoError(fmt::format("checkpoint folder {} has no {}; a Hugging Face checkpoint folder "
                              "holds config.json next to its weights", dir.string(), kConfigFile));
  }
  state->config = detail::read_json_file(config_path, /*unique_keys=*/false);
  if (!state->config.is_object()) {
    throw InvalidInput(fmt::format("{} does not hold a JSON object", config_path.string()));
  }

  if (std::filesystem::exists(dir / kSingleFile)) {
    state->add_shard(SafetensorsFile::open(dir / kSingleFile));
  } else if (std::filesystem::exists(dir / kIndexFile)) {
    state->open_sharded(dir / kIndexFile);
  } else {
    const bool has_pickle = std::filesystem::exists(dir / "pytorch_model.bin") ||
                            std::filesystem::exists(dir / "pytorch_model.bin.index.json");
    throw IoError(fmt::format(
        "checkpoint folder {} has neither {} nor {}{}", dir.string(), kSingleFile, kIndexFile,
        has_pickle ? "; it holds pickled pytorch_model.bin weights, which SpeechLens does not "
                     "read: convert them with transformers (model.save_pretrained(dir, "
                     "safe_serialization=True))"
                   : ""));
  }
  Checkpoint checkpoint;
  checkpoint.state_ = std::move(state);
  return checkpoint;
}

const std::filesystem::path& Checkpoint::dir() const { return state_->dir; }

const nlohmann::json& Checkpoint::config() const { return state_->config; }

nlohmann::json Checkpoint::read_json(const std::string& filename) const {
  const auto path = state_->dir / filename;
  if (!std::filesystem::exists(path)) return nullptr;
  return detail::read_json_file(path, /*unique_keys=*/false);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> names;
  names.reserve(state_->shard_of.size());
  for (const auto& [name, _] : state_->shard_of) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

bool Checkpoint::contains(const std::string& name) const {
  return state_->shard_of.count(name) != 0;
}

std::vector<int64_t> Checkpoint::shape(const std::string& name) const {
  return state_->shard_holding(name).shape(name);
}

at::ScalarType Checkpoint::dtype(const std::string& name) const {
  return state_->shard_holding(name).dtype(name);
}

at::Tensor Checkpoint::get(const std::string& name) const {
  return state_->shard_holding(name).get(name);
}

std::vector<std::filesystem::path> Checkpoint::files() const {
  std::vector<std::filesystem::path> files;
  for (const auto& shard : state_->shards) files.push_back(shard.path());
  return files;
}

// ---------------------------------------------------------------------------------------------

WeightLoader::WeightLoader(const Checkpoint& checkpoint, Options options)
    : checkpoint_(checkpoint), options_(options) {}

at::Tensor WeightLoader::placeholder(at::IntArrayRef shape) const {
  return at::zeros(shape, at::TensorOptions()
                              .dtype(options_.dtype.value_or(at::kFloat))
                              .device(options_.device.value_or(at::Device(at::kCPU))));
}

std::optional<at::Tensor> WeightLoader::load(const std::string& name, at::IntArrayRef shape,
                                             bool required) {
  if (!checkpoint_.contains(name)) {
    if (!required) return std::nullopt;
    missing_.push_back(name);
    return placeholder(shape);
  }
  taken_.insert(name);
  const std::vector<int64_t> actual = checkpoint_.shape(name);
  if (!std::equal(actual.begin(), actual.end(), shape.begin(), shape.end())) {
    misshaped_.push_back({name, shape.vec(), actual});
    return placeholder(shape);
  }
  at::Tensor tensor = checkpoint_.get(name);
  const bool convert_dtype = options_.dtype && at::isFloatingType(tensor.scalar_type()) &&
                             tensor.scalar_type() != *options_.dtype;
  if (convert_dtype) tensor = tensor.to(*options_.dtype);
  if (options_.device && tensor.device() != *options_.device) tensor = tensor.to(*options_.device);
  return tensor;
}

at::Tensor WeightLoader::take(const std::string& name, at::IntArrayRef shape) {
  return *load(name, shape, /*required=*/true);
}

std::optional<at::Tensor> WeightLoader::take_optional(const std::string& name,
                                                      at::IntArrayRef shape) {
  return load(name, shape, /*required=*/false);
}

bool WeightLoader::contains(const std::string& name) const { return checkpoint_.contains(name); }

void WeightLoader::ignore(const std::string& name) { taken_.insert(name); }

void WeightLoader::finish() const {
  std::set<std::string> missing(missing_.begin(), missing_.end());
  std::vector<std::string> unexpected;
  for (const auto& name : checkpoint_.names()) {
    if (!taken_.count(name)) unexpected.push_back(name);
  }
  // A tensor taken twice with the same wrong shape is one problem, not two.
  std::map<std::string, const Misshaped*> misshaped;
  for (const auto& entry : misshaped_) misshaped.emplace(entry.name, &entry);
  if (missing.empty() && unexpected.empty() && misshaped.empty()) return;

  std::string message = fmt::format(
      "checkpoint {} does not match the model: {} missing, {} unexpected, {} mis-shaped "
      "tensor(s)", checkpoint_.dir().string(), missing.size(), unexpected.size(),
      misshaped.size());
  for (const auto& name : missing) message += fmt::format("\n  missing:    {}", name);
  for (const auto& name : unexpected) message += fmt::format("\n  unexpected: {}", name);
  for (const auto& [name, entry] : misshaped) {
    message += fmt::format("\n  mis-shaped: {} (model expects {}, checkpoint has {})", name,
                           shape_string(entry->expected), shape_string(entry->actual));
  }
  message += "\nCheck that config.json describes these weights (sizes, layer counts, optional "
             "biases) and that the folder holds the model family being loaded.";
  throw InvalidInput(message);
}

}  // namespace speechlens::io
