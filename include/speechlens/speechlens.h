#pragma once
// Umbrella header: everything a C++ research program needs.
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"
#include "speechlens/version.h"
#include "speechlens/text/bpe_tokenizer.h"
#include "speechlens/text/unicode.h"
#include "speechlens/text/whisper_tokenizer.h"
