#pragma once
#include <string>

namespace speechlens {

// The library version, and the torch version it was compiled against.
std::string version();
std::string torch_version();

}  // namespace speechlens
