#include "speechlens/util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace speechlens::log {
namespace {

spdlog::logger& logger() {
  // Logs go to stderr so that a program's stdout (transcripts, JSON reports) stays clean.
  static auto instance = [] {
    auto created = spdlog::stderr_color_mt("speechlens");
    created->set_pattern("[speechlens %l] %v");
    created->set_level(spdlog::level::info);
    return created;
  }();
  return *instance;
}

}  // namespace

void set_level(Level level) {
  static constexpr spdlog::level::level_enum kLevels[] = {
      spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err,
      spdlog::level::off};
  logger().set_level(kLevels[static_cast<int>(level)]);
}
void debug(std::string_view message) { logger().debug("{}", message); }
void info(std::string_view message) { logger().info("{}", message); }
void warn(std::string_view message) { logger().warn("{}", message); }
void error(std::string_view message) { logger().error("{}", message); }

}  // namespace speechlens::log
