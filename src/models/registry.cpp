#include "speechlens/models/registry.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>
#include <mutex>

#include "speechlens/io/checkpoint.h"
#include "speechlens/util/error.h"

namespace speechlens::models {

namespace {

struct Families {
  std::mutex mutex;
  std::map<std::string, FamilyFactory> factories;
};

// Function-local so that registrations from other translation units' statics find it built.
Families& registry() {
  static Families families;
  return families;
}

}  // namespace

bool register_family(const std::string& model_type, FamilyFactory factory) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.factories[model_type] = std::move(factory);
  return true;
}

std::vector<std::string> families() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> out;
  for (const auto& [name, factory] : r.factories) out.push_back(name);
  return out;
}

std::unique_ptr<HookedModel> load(const io::Checkpoint& checkpoint, const LoadOptions& options) {
  const nlohmann::json& config = checkpoint.config();
  std::string model_type;
  if (config.is_object()) {
    auto it = config.find("model_type");
    if (it != config.end() && it->is_string()) model_type = it->get<std::string>();
  }
  FamilyFactory factory;
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(model_type);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& name : families()) known += (known.empty() ? "" : ", ") + name;
    throw InvalidInput(fmt::format("{}: config.json has model_type {}, which SpeechLens does not load (supported: {})",
                                   checkpoint.dir().string(),
                                   model_type.empty() ? std::string("(none)") : "'" + model_type + "'", known));
  }
  return factory(checkpoint, options);
}

std::unique_ptr<HookedModel> load(const std::filesystem::path& dir, const LoadOptions& options) {
  return load(io::Checkpoint::open(dir), options);
}

}  // namespace speechlens::models
