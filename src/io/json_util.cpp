#include "json_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "speechlens/util/error.h"

namespace speechlens::io::detail {

nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& what) {
  // One key set per open object; the parser callback sees keys in document order.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto reject_duplicates = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                               nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json result;
  try {
    result = nlohmann::json::parse(text.begin(), text.end(), reject_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(fmt::format("{} is not valid JSON: {}", what, e.what()));
  }
  if (!duplicate.empty()) {
    throw InvalidInput(
        fmt::format("{} repeats the key \"{}\"; every key of a JSON object must be unique", what,
                    duplicate));
  }
  return result;
}

nlohmann::json read_json_file(const std::filesystem::path& path, bool unique_keys) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw IoError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(fmt::format("cannot read {}", path.string()));
  const std::string content = std::move(text).str();
  if (unique_keys) return parse_json_unique_keys(content, path.string());
  try {
    return nlohmann::json::parse(content);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(fmt::format("{} is not valid JSON: {}", path.string(), e.what()));
  }
}

}  // namespace speechlens::io::detail
