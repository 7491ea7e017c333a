#include "speechlens/io/audio_file.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <sndfile.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "speechlens/audio/resample.h"
#include "speechlens/util/error.h"

namespace speechlens::io {
namespace {

namespace fs = std::filesystem;

struct SndfileCloser {
  void operator()(SNDFILE* file) const { sf_close(file); }
};
using SndfileHandle = std::unique_ptr<SNDFILE, SndfileCloser>;

// libsndfile reports why sf_open failed but not whether the cause was the OS or the bytes;
// checking the path first lets missing/unreadable files surface as IoError.
void check_readable_regular_file(const fs::path& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    throw IoError(fmt::format("audio file '{}' does not exist", path.string()));
  }
  if (!fs::is_regular_file(status)) {
    throw IoError(fmt::format("audio path '{}' is not a regular file", path.string()));
  }
  std::ifstream probe(path, std::ios::binary);
  if (!probe) {
    throw IoError(fmt::format("cannot open audio file '{}': {}", path.string(),
                              std::strerror(errno)));
  }
  if (fs::file_size(path, ec) == 0 && !ec) {
    throw InvalidInput(fmt::format("audio file '{}' is empty (0 bytes)", path.string()));
  }
}

// Reads every frame the decoder yields, without trusting the header's frame count (it is
// unknown for some containers and wrong for truncated files).
std::vector<float> read_all_frames(SNDFILE* file, int channels) {
  constexpr sf_count_t kBlockFrames = 1 << 16;
  std::vector<float> interleaved;
  std::vector<float> block(static_cast<size_t>(kBlockFrames) * channels);
  while (true) {
    const sf_count_t got = sf_readf_float(file, block.data(), kBlockFrames);
    if (got <= 0) break;
    interleaved.insert(interleaved.end(), block.begin(), block.begin() + got * channels);
    if (got < kBlockFrames) break;
  }
  return interleaved;
}

// The line of libsndfile's parse log that reports a header overstating the data, or "".
std::string truncation_note(SNDFILE* file) {
  std::string log(8192, '\0');
  sf_command(file, SFC_GET_LOG_INFO, log.data(), static_cast<int>(log.size()));
  log.resize(std::strlen(log.c_str()));
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(start, end - start);
    if (line.find("should be") != std::string::npos || line.find("too long") != std::string::npos ||
        line.find("truncated") != std::string::npos) {
      return line;
    }
    start = end + 1;
  }
  return "";
}

void check_finite(const at::Tensor& samples, const fs::path& path) {
  const at::Tensor bad = at::logical_not(at::isfinite(samples));
  if (!bad.any().item<bool>()) return;
  const int64_t index = bad.nonzero()[0][0].item<int64_t>();
  const float value = samples[index].item<float>();
  throw InvalidInput(fmt::format(
      "audio file '{}' contains a non-finite sample ({}) at frame {}; the file is corrupt or "
      "was written from a NaN/Inf signal",
      path.string(), value, index));
}

int format_for_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".wav") return SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  if (ext == ".flac") return SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  if (ext == ".ogg") return SF_FORMAT_OGG | SF_FORMAT_VORBIS;
  throw InvalidInput(fmt::format(
      "cannot infer an audio format from the extension of '{}'; use .wav, .flac or .ogg",
      path.string()));
}

void write_with_format(const fs::path& path, const at::Tensor& samples, int sample_rate,
                       int format) {
  if (!samples.defined() || (samples.dim() != 1 && samples.dim() != 2)) {
    throw InvalidInput("write_audio expects samples of shape [T] or [C, T]");
  }
  if (!samples.is_floating_point()) {
    throw InvalidInput(fmt::format("write_audio expects floating-point samples, got {}",
                                   c10::toString(samples.scalar_type())));
  }
  if (sample_rate <= 0) {
    throw InvalidInput(fmt::format("write_audio: sample_rate must be positive, got {}", sample_rate));
  }
  const at::Tensor channels_first = samples.dim() == 1 ? samples.unsqueeze(0) : samples;
  const int channels = static_cast<int>(channels_first.size(0));
  if (channels < 1) throw InvalidInput("write_audio: samples have zero channels");
  // libsndfile wants interleaved frames: [T, C] row-major.
  const at::Tensor interleaved =
      channels_first.to(at::kCPU, at::kFloat).t().contiguous();

  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = channels;
  info.format = format;
  if (!sf_format_check(&info)) {
    throw InvalidInput(fmt::format(
        "libsndfile cannot write '{}' with {} channel(s) at {} Hz in the requested format",
        path.string(), channels, sample_rate));
  }
  SndfileHandle file(sf_open(path.string().c_str(), SFM_WRITE, &info));
  if (!file) {
    throw IoError(fmt::format("cannot open '{}' for writing: {}", path.string(),
                              sf_strerror(nullptr)));
  }
  // Integer encodings must clip rather than wrap around for |x| > 1.
  sf_command(file.get(), SFC_SET_CLIPPING, nullptr, SF_TRUE);
  const sf_count_t frames = interleaved.size(0);
  const sf_count_t written =
      sf_writef_float(file.get(), interleaved.data_ptr<float>(), frames);
  if (written != frames) {
    throw IoError(fmt::format("writing '{}' stopped after {} of {} frames: {}", path.string(),
                              written, frames, sf_strerror(file.get())));
  }
}

}  // namespace

AudioClip read_audio(const fs::path& path) {
  check_readable_regular_file(path);

  SF_INFO info{};
  SndfileHandle file(sf_open(path.string().c_str(), SFM_READ, &info));
  if (!file) {
    throw InvalidInput(fmt::format(
        "cannot decode '{}' as audio: {} (supported: WAV, FLAC, OGG/Vorbis and the other "
        "formats of libsndfile {})",
        path.string(), sf_strerror(nullptr), sf_version_string()));
  }
  if (info.channels <= 0 || info.samplerate <= 0) {
    throw InvalidInput(fmt::format("audio file '{}' declares {} channels at {} Hz",
                                   path.string(), info.channels, info.samplerate));
  }
  if (info.frames == 0) {
    throw InvalidInput(fmt::format(
        "audio file '{}' is a valid {} Hz file but contains no samples", path.string(),
        info.samplerate));
  }

  std::vector<float> interleaved = read_all_frames(file.get(), info.channels);
  const int error = sf_error(file.get());
  if (error != SF_ERR_NO_ERROR) {
    throw InvalidInput(fmt::format("decoding '{}' failed: {}", path.string(),
                                   sf_error_number(error)));
  }
  const int64_t frames = static_cast<int64_t>(interleaved.size()) / info.channels;
  if (frames == 0) {
    throw InvalidInput(fmt::format("audio file '{}' contains no decodable samples", path.string()));
  }
  // libsndfile clamps a too-long WAV data chunk to the bytes present and only says so in its
  // log; that log line is the one trace a truncated file leaves.
  const std::string overstated = truncation_note(file.get());
  if ((info.frames > 0 && info.frames != SF_COUNT_MAX && frames < info.frames) ||
      !overstated.empty()) {
    throw InvalidInput(fmt::format(
        "audio file '{}' is truncated: its header declares more data than the file holds "
        "(decoded {} of {} frames; libsndfile: {})",
        path.string(), frames, info.frames, overstated.empty() ? "short read" : overstated));
  }

  at::Tensor samples =
      at::from_blob(interleaved.data(), {frames, info.channels}, at::kFloat).clone();
  at::Tensor mono = info.channels == 1 ? samples.reshape({frames}) : samples.mean(1);
  check_finite(mono, path);
  return {mono.contiguous(), info.samplerate};
}

at::Tensor load_audio(const fs::path& path, int target_rate) {
  if (target_rate <= 0) {
    throw InvalidInput(fmt::format("load_audio: target_rate must be positive, got {}", target_rate));
  }
  AudioClip clip = read_audio(path);
  return audio::resample(clip.samples, clip.sample_rate, target_rate);
}

void write_wav(const fs::path& path, const at::Tensor& samples, int sample_rate,
               WavEncoding encoding) {
  const int subtype = encoding == WavEncoding::pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT;
  write_with_format(path, samples, sample_rate, SF_FORMAT_WAV | subtype);
}

void write_audio(const fs::path& path, const at::Tensor& samples, int sample_rate) {
  write_with_format(path, samples, sample_rate, format_for_extension(path));
}

}  // namespace speechlens::io
