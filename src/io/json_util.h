#pragma once
// JSON helpers shared by the io readers (internal; not installed).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace speechlens::io::detail {

// Parses `text`, rejecting any object that repeats a key (nlohmann, like most parsers, would
// silently keep the last one, which lets a hostile header say two things about one tensor).
// `what` names the source in the InvalidInput message.
nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& what);

// Reads and parses a JSON file; `unique_keys` selects parse_json_unique_keys. IoError when the
// file cannot be read, InvalidInput when it is not valid JSON.
nlohmann::json read_json_file(const std::filesystem::path& path, bool unique_keys);

}  // namespace speechlens::io::detail
