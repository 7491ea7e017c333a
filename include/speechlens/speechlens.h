#pragma once
// Umbrella header: everything a C++ research program needs.
#include "speechlens/audio/log_mel.h"
#include "speechlens/audio/normalize.h"
#include "speechlens/audio/resample.h"
#include "speechlens/io/audio_file.h"
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"
#include "speechlens/version.h"
#include "speechlens/io/checkpoint.h"
#include "speechlens/io/safetensors.h"
#include "speechlens/text/bpe_tokenizer.h"
#include "speechlens/text/unicode.h"
#include "speechlens/text/whisper_tokenizer.h"
