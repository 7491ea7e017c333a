#pragma once
// The model families SpeechLens knows, by the `model_type` of their config.json, and the one
// loader that picks a family for a checkpoint folder. A family registers itself in its own
// source file:
//
//   SPEECHLENS_REGISTER_FAMILY(whisper, "whisper", HookedWhisper)
//
// so adding a family is one file plus that line.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "speechlens/models/hooked_model.h"

namespace speechlens::io {
class Checkpoint;
}

namespace speechlens::models {

using FamilyFactory = std::function<std::unique_ptr<HookedModel>(const io::Checkpoint&, const LoadOptions&)>;

// Registers `factory` for checkpoints whose config.json has this model_type (returns true, so
// it can initialise a static).
bool register_family(const std::string& model_type, FamilyFactory factory);
// The model_types that load, sorted.
std::vector<std::string> families();

// Loads the checkpoint folder `dir` (config.json + safetensors) with the family its
// config.json names. Throws InvalidInput naming the supported model types otherwise.
std::unique_ptr<HookedModel> load(const std::filesystem::path& dir, const LoadOptions& options = {});
std::unique_ptr<HookedModel> load(const io::Checkpoint& checkpoint, const LoadOptions& options = {});

}  // namespace speechlens::models

#define SPEECHLENS_REGISTER_FAMILY(tag, model_type, Class)                                          \
  namespace {                                                                                      \
  [[maybe_unused]] const bool speechlens_registered_##tag = ::speechlens::models::register_family( \
      model_type, [](const ::speechlens::io::Checkpoint& checkpoint,                               \
                     const ::speechlens::models::LoadOptions& options)                             \
                      -> std::unique_ptr<::speechlens::models::HookedModel> {                      \
        return std::make_unique<Class>(checkpoint, options);                                       \
      });                                                                                          \
  }
