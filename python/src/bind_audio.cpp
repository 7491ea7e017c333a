// speechlens._C.audio: audio files, resampling and the model front ends.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <nlohmann/json.hpp>

#include "bindings.h"
#include "speechlens/audio/log_mel.h"
#include "speechlens/audio/normalize.h"
#include "speechlens/audio/resample.h"
#include "speechlens/io/audio_file.h"
#include "speechlens/util/error.h"

namespace speechlens::python {
namespace {

// Preprocessor configs arrive as Python dicts; JSON text is the lossless bridge.
nlohmann::json to_json(const py::dict& config) {
  const py::module_ json = py::module_::import("json");
  return nlohmann::json::parse(json.attr("dumps")(config).cast<std::string>());
}

audio::WhisperPadding parse_padding(const std::string& padding) {
  if (padding == "max_length") return audio::WhisperPadding::max_length;
  if (padding == "longest") return audio::WhisperPadding::longest;
  throw InvalidInput("padding must be 'max_length' or 'longest', got '" + padding + "'");
}

}  // namespace

void bind_audio(py::module_& root) {
  py::module_ m = root.def_submodule("audio", "Audio files, resampling, feature extractors");

  m.def(
      "read_audio",
      [](const std::filesystem::path& path) {
        io::AudioClip clip = io::read_audio(path);
        return py::make_tuple(clip.samples, clip.sample_rate);
      },
      py::arg("path"),
      "Decode a WAV/FLAC/OGG file to (mono float32 samples [T], sample_rate).");
  m.def("load_audio", &io::load_audio, py::arg("path"), py::arg("target_rate") = 16000,
        "Decode a file to mono float32 [T] resampled to target_rate.");
  m.def(
      "write_wav",
      [](const std::filesystem::path& path, const at::Tensor& samples, int sample_rate,
         const std::string& encoding) {
        if (encoding != "float32" && encoding != "pcm16") {
          throw InvalidInput("encoding must be 'float32' or 'pcm16', got '" + encoding + "'");
        }
        io::write_wav(path, samples, sample_rate,
                      encoding == "pcm16" ? io::WavEncoding::pcm16 : io::WavEncoding::float32);
      },
      py::arg("path"), py::arg("samples"), py::arg("sample_rate"),
      py::arg("encoding") = "float32", "Write [T] or [C, T] samples as a WAV file.");
  m.def("write_audio", &io::write_audio, py::arg("path"), py::arg("samples"),
        py::arg("sample_rate"), "Write .wav (float32), .flac (16-bit) or .ogg (Vorbis).");

  m.def(
      "resample",
      [](const at::Tensor& wave, int from_rate, int to_rate, int lowpass_filter_width,
         double rolloff, const std::string& window, double beta) {
        audio::ResampleOptions options;
        options.lowpass_filter_width = lowpass_filter_width;
        options.rolloff = rolloff;
        if (window == "kaiser") {
          options.window = audio::ResampleWindow::kaiser;
        } else if (window == "hann") {
          options.window = audio::ResampleWindow::hann;
        } else {
          throw InvalidInput("window must be 'kaiser' or 'hann', got '" + window + "'");
        }
        options.beta = beta;
        return audio::resample(wave, from_rate, to_rate, options);
      },
      py::arg("wave"), py::arg("from_rate"), py::arg("to_rate"),
      py::arg("lowpass_filter_width") = audio::ResampleOptions{}.lowpass_filter_width,
      py::arg("rolloff") = audio::ResampleOptions{}.rolloff, py::arg("window") = "kaiser",
      py::arg("beta") = audio::ResampleOptions{}.beta,
      "Windowed-sinc polyphase resampling of [T] or [B, T].");

  m.def("slaney_mel_filter_bank", &audio::slaney_mel_filter_bank, py::arg("num_frequency_bins"),
        py::arg("num_mel_filters"), py::arg("min_frequency"), py::arg("max_frequency"),
        py::arg("sampling_rate"), "HF mel_filter_bank(norm='slaney', mel_scale='slaney').");

  py::class_<audio::WhisperFeatureExtractor>(m, "WhisperFeatureExtractor")
      .def(py::init([](int64_t feature_size, int64_t sampling_rate, int64_t n_fft,
                       int64_t hop_length, int64_t chunk_length, float padding_value) {
             // The same keys and checks as a preprocessor_config.json.
             return audio::WhisperFeatureExtractor(nlohmann::json{
                 {"feature_size", feature_size}, {"sampling_rate", sampling_rate},
                 {"n_fft", n_fft}, {"hop_length", hop_length}, {"chunk_length", chunk_length},
                 {"padding_value", padding_value}});
           }),
           py::arg("feature_size") = 80, py::arg("sampling_rate") = 16000,
           py::arg("n_fft") = 400, py::arg("hop_length") = 160, py::arg("chunk_length") = 30,
           py::arg("padding_value") = 0.0f)
      .def_static(
          "from_config",
          [](const py::dict& config) { return audio::WhisperFeatureExtractor(to_json(config)); },
          py::arg("preprocessor_config"), "Build from a preprocessor_config.json dict.")
      .def(
          "__call__",
          [](const audio::WhisperFeatureExtractor& self, const at::Tensor& wave) {
            py::gil_scoped_release release;
            return self(wave);
          },
          py::arg("wave"), "[T] -> [n_mels, frames] or [B, T] -> [B, n_mels, frames].")
      .def(
          "batch",
          [](const audio::WhisperFeatureExtractor& self, const std::vector<at::Tensor>& waves,
             const std::string& padding, bool truncation) {
            const audio::WhisperPadding mode = parse_padding(padding);
            audio::WhisperFeatures features;
            {
              py::gil_scoped_release release;
              features = self(waves, mode, truncation);
            }
            return py::make_tuple(features.input_features, features.attention_mask);
          },
          py::arg("waves"), py::arg("padding") = "max_length", py::arg("truncation") = true,
          "Clips of unequal lengths -> (input_features [B, n_mels, frames], attention_mask "
          "int32 [B, frames]).")
      .def("log_mel", &audio::WhisperFeatureExtractor::log_mel, py::arg("padded_waves"))
      .def_property_readonly("mel_filters", &audio::WhisperFeatureExtractor::mel_filters)
      .def_property_readonly("n_mels",
                             [](const audio::WhisperFeatureExtractor& s) { return s.options().n_mels; })
      .def_property_readonly("n_samples",
                             [](const audio::WhisperFeatureExtractor& s) { return s.options().n_samples; })
      .def_property_readonly("frames", &audio::WhisperFeatureExtractor::frames);

  m.def(
      "whisper_log_mel",
      [](const at::Tensor& wave, int n_mels) {
        audio::WhisperFeatureOptions options;
        options.n_mels = n_mels;
        py::gil_scoped_release release;
        return audio::WhisperFeatureExtractor(options)(wave);
      },
      py::arg("wave"), py::arg("n_mels") = 80,
      "Whisper log-mel of a 16 kHz [T] or [B, T] waveform, padded/truncated to 30 s.");

  m.def("normalize_waveform", &audio::normalize_waveform, py::arg("wave"),
        "Zero mean, unit variance (eps 1e-7) per row of [T] or [B, T].");
  m.def(
      "prepare_waveforms",
      [](const std::vector<at::Tensor>& waves, bool do_normalize, bool return_attention_mask,
         float padding_value) {
        audio::WaveBatch batch =
            audio::prepare_waveforms(waves, do_normalize, return_attention_mask, padding_value);
        py::object mask = batch.attention_mask.defined() ? py::cast(batch.attention_mask)
                                                         : py::none();
        return py::make_tuple(batch.input_values, mask);
      },
      py::arg("waves"), py::arg("do_normalize") = true, py::arg("return_attention_mask") = false,
      py::arg("padding_value") = 0.0f,
      "wav2vec2/HuBERT input: (input_values [B, T_max], attention_mask int32 or None).");
}

}  // namespace speechlens::python
