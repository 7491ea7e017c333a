#include "speechlens/io/audio_file.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "speechlens/util/error.h"

namespace fs = std::filesystem;
using speechlens::InvalidInput;
using speechlens::IoError;
namespace io = speechlens::io;

namespace {

class AudioFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("speechlens_audio_file_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path path(const std::string& name) const { return dir_ / name; }

  static at::Tensor tone(int64_t n, double cycles_per_sample = 0.01, double amplitude = 0.5) {
    return at::sin(at::arange(n, at::kDouble).mul(2 * M_PI * cycles_per_sample))
        .mul(amplitude)
        .to(at::kFloat);
  }

  std::string read_bytes(const fs::path& p) const {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void write_bytes(const fs::path& p, const std::string& bytes) const {
    std::ofstream(p, std::ios::binary) << bytes;
  }

  // Asserts that reading `p` throws InvalidInput whose message contains `needle`.
  void expect_invalid(const fs::path& p, const std::string& needle) const {
    try {
      io::read_audio(p);
      FAIL() << "expected InvalidInput for " << p;
    } catch (const InvalidInput& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
};

TEST_F(AudioFileTest, FloatWavRoundTripsExactly) {
  const at::Tensor x = tone(16000);
  io::write_wav(path("a.wav"), x, 16000);
  const io::AudioClip clip = io::read_audio(path("a.wav"));
  EXPECT_EQ(clip.sample_rate, 16000);
  EXPECT_EQ(clip.samples.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(clip.samples, x));
}

TEST_F(AudioFileTest, Pcm16FlacAndOggDecodeWithinTheirPrecision) {
  const at::Tensor x = tone(16000);
  io::write_wav(path("a.wav"), x, 16000, io::WavEncoding::pcm16);
  io::write_audio(path("a.flac"), x, 16000);
  io::write_audio(path("a.ogg"), x, 16000);
  EXPECT_LT((io::read_audio(path("a.wav")).samples - x).abs().max().item<float>(), 1.0f / 32768);
  EXPECT_LT((io::read_audio(path("a.flac")).samples - x).abs().max().item<float>(), 1.0f / 32768);
  const io::AudioClip ogg = io::read_audio(path("a.ogg"));
  ASSERT_EQ(ogg.samples.size(0), x.size(0));
  // Vorbis is lossy: the waveform stays close, not exact.
  EXPECT_LT((ogg.samples - x).pow(2).mean().sqrt().item<float>(), 0.02f);
}

TEST_F(AudioFileTest, MultiChannelIsAveragedToMono) {
  const at::Tensor left = tone(8000);
  const at::Tensor right = tone(8000, 0.003, 0.2);
  io::write_wav(path("stereo.wav"), at::stack({left, right}), 22050);
  const io::AudioClip clip = io::read_audio(path("stereo.wav"));
  EXPECT_EQ(clip.sample_rate, 22050);
  ASSERT_EQ(clip.samples.dim(), 1);
  EXPECT_TRUE(at::allclose(clip.samples, (left + right) / 2, 0, 1e-7));
}

TEST_F(AudioFileTest, LoadAudioResamplesToTheTargetRate) {
  io::write_wav(path("a.wav"), tone(44100), 44100);
  EXPECT_EQ(io::load_audio(path("a.wav")).size(0), 16000);
  EXPECT_EQ(io::load_audio(path("a.wav"), 8000).size(0), 8000);
  EXPECT_THROW(io::load_audio(path("a.wav"), 0), InvalidInput);
}

TEST_F(AudioFileTest, MissingFileOrDirectoryIsAnIoError) {
  EXPECT_THROW(io::read_audio(path("missing.wav")), IoError);
  EXPECT_THROW(io::read_audio(dir_), IoError);
}

TEST_F(AudioFileTest, EmptyFileIsInvalid) {
  write_bytes(path("empty.wav"), "");
  expect_invalid(path("empty.wav"), "empty (0 bytes)");
}

TEST_F(AudioFileTest, ZeroLengthValidWavIsInvalid) {
  io::write_wav(path("zero.wav"), at::zeros({0}), 16000);
  expect_invalid(path("zero.wav"), "contains no samples");
}

TEST_F(AudioFileTest, TruncatedWavIsInvalid) {
  io::write_wav(path("full.wav"), tone(16000), 16000, io::WavEncoding::pcm16);
  const std::string bytes = read_bytes(path("full.wav"));
  write_bytes(path("cut.wav"), bytes.substr(0, bytes.size() / 2));
  expect_invalid(path("cut.wav"), "truncated");
}

TEST_F(AudioFileTest, TruncatedFlacIsInvalid) {
  io::write_audio(path("full.flac"), tone(16000), 16000);
  const std::string bytes = read_bytes(path("full.flac"));
  write_bytes(path("cut.flac"), bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(io::read_audio(path("cut.flac")), InvalidInput);
}

TEST_F(AudioFileTest, NonAudioBytesAreInvalidWithLibsndfilesReason) {
  write_bytes(path("text.wav"), std::string(2000, 'x'));
  expect_invalid(path("text.wav"), "Format not recognised");
}

TEST_F(AudioFileTest, UnsupportedCodecIsInvalid) {
  io::write_wav(path("pcm.wav"), tone(1600), 16000, io::WavEncoding::pcm16);
  std::string bytes = read_bytes(path("pcm.wav"));
  // The fmt chunk's format tag (bytes 20-21) set to a codec no decoder knows.
  bytes[20] = '\x77';
  bytes[21] = '\x77';
  write_bytes(path("codec.wav"), bytes);
  EXPECT_THROW(io::read_audio(path("codec.wav")), InvalidInput);
}

TEST_F(AudioFileTest, NonFiniteSampleIsInvalidAndNamesItsFrame) {
  at::Tensor x = tone(4000);
  x[1234] = std::nanf("");
  io::write_wav(path("nan.wav"), x, 16000);
  expect_invalid(path("nan.wav"), "frame 1234");
  x[1234] = 0.0f;
  x[99] = INFINITY;
  io::write_wav(path("inf.wav"), x, 16000);
  expect_invalid(path("inf.wav"), "frame 99");
}

TEST_F(AudioFileTest, WriteRejectsBadArguments) {
  EXPECT_THROW(io::write_wav(path("a.wav"), at::zeros({2, 3, 4}), 16000), InvalidInput);
  EXPECT_THROW(io::write_wav(path("a.wav"), at::zeros({4}, at::kInt), 16000), InvalidInput);
  EXPECT_THROW(io::write_wav(path("a.wav"), at::zeros({4}), 0), InvalidInput);
  EXPECT_THROW(io::write_audio(path("a.mp4"), at::zeros({4}), 16000), InvalidInput);
  EXPECT_THROW(io::write_wav(dir_ / "no_such_dir" / "a.wav", at::zeros({4}), 16000), speechlens::IoError);
}

}  // namespace
