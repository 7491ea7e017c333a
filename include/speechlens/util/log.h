#pragma once
// Logging facade over spdlog. Kept free of spdlog/fmt includes so that no translation unit
// that sees torch's bundled fmt also sees Debian's (see src/util/log.cpp).
#include <string_view>

namespace speechlens::log {

enum class Level { debug, info, warn, error, off };

void set_level(Level level);
void debug(std::string_view message);
void info(std::string_view message);
void warn(std::string_view message);
void error(std::string_view message);

}  // namespace speechlens::log
