#pragma once
// Reading HF config.json values with defaults and type errors that name the key (internal).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "speechlens/util/error.h"

namespace speechlens::models::detail {

// config[key] as T, or `fallback` when the key is absent or null.
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

// A token id field that HF allows to be one id or a list of ids (eos_token_id): every id, in
// order; empty when absent or null.
inline std::vector<int64_t> config_ids(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return {};
  if (it->is_number_integer()) return {it->get<int64_t>()};
  return config_value<std::vector<int64_t>>(config, key, {});
}

}  // namespace speechlens::models::detail
