#pragma once
// Reading typed values out of an HF config.json (internal to the model implementations).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "speechlens/util/error.h"

namespace speechlens::models::detail {

// config[key] as T, or `fallback` when the key is absent or null; a value of the wrong type is
// an InvalidInput naming the key.
template <typename T>
T config_value(const nlohmann::json& config, const char* key, T fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(fmt::format("config.json: '{}' has the wrong type: {}", key, e.what()));
  }
}

}  // namespace speechlens::models::detail
