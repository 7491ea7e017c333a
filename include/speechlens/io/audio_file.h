#pragma once
// Audio files through libsndfile (WAV, FLAC, OGG/Vorbis and whatever else the installed
// libsndfile decodes). Everything comes back as mono float32 in [-1, 1] for integer formats
// (float files keep their values); multi-channel files are downmixed by averaging channels.
//
// Bad input never crashes and never returns garbage:
//   - a path that does not exist, is not a regular file or cannot be opened -> IoError
//   - an empty (0-byte) file, bytes that are not audio, an unsupported format,
//     a header with no samples (zero-length but valid WAV), a truncated file whose data
//     ends before the length its header declares, NaN/Inf samples -> InvalidInput
//     (libsndfile's own reason is quoted where it gave one).
#include <ATen/core/Tensor.h>

#include <filesystem>

namespace speechlens::io {

struct AudioClip {
  at::Tensor samples;  // float32 [T], mono
  int sample_rate = 0;
};

// Decodes a whole file to mono float32 at its own sample rate.
AudioClip read_audio(const std::filesystem::path& path);

// read_audio followed by audio::resample to `target_rate` (a no-op when the rates agree).
at::Tensor load_audio(const std::filesystem::path& path, int target_rate = 16000);

// Sample encodings write_wav can produce. pcm16 clips values outside [-1, 1].
enum class WavEncoding { float32, pcm16 };

// Writes `samples` ([T] mono, or [C, T] channels-first) as a WAV file.
void write_wav(const std::filesystem::path& path, const at::Tensor& samples, int sample_rate,
               WavEncoding encoding = WavEncoding::float32);

// Writes `samples` in the container named by the file extension: .wav (float32), .flac
// (16-bit) or .ogg (Vorbis). Throws InvalidInput for any other extension.
void write_audio(const std::filesystem::path& path, const at::Tensor& samples, int sample_rate);

}  // namespace speechlens::io
