#pragma once
// Umbrella header: everything a C++ research program needs.
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"
#include "speechlens/version.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/io/safetensors.h"
