// speechlens._C.models.WhisperPipeline: wave -> log-mel -> greedy decoding -> text.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "bindings.h"
#include "speechlens/models/whisper_pipeline.h"

namespace speechlens::python {

namespace {

models::TranscribeOptions transcribe_options(std::optional<std::string> language, std::string task,
                                             int64_t max_new_tokens) {
  models::TranscribeOptions options;
  options.language = std::move(language);
  options.task = std::move(task);
  options.max_new_tokens = max_new_tokens;
  return options;
}

}  // namespace

void bind_whisper_pipeline(py::module_& root) {
  auto m = root.def_submodule("models", "Hooked model implementations");
  py::class_<models::WhisperPipeline>(m, "WhisperPipeline",
                                      "Feature extractor, tokenizer and generation settings around a HookedWhisper.")
      .def(py::init<models::HookedWhisper&, const std::filesystem::path&>(), py::arg("model"), py::arg("dir"),
           py::keep_alive<1, 2>())
      .def(
          "features",
          [](const models::WhisperPipeline& pipeline, const at::Tensor& wave) {
            models::WhisperFeaturesBatch batch;
            {
              py::gil_scoped_release release;
              batch = pipeline.features(wave);
            }
            return py::make_tuple(batch.mel, batch.mel_lengths);
          },
          py::arg("wave"), "(log-mel [B, n_mels, frames], real frames [B]) of a [T] or [B, T] wave.")
      .def(
          "generate",
          [](models::WhisperPipeline& pipeline, const at::Tensor& wave, std::optional<std::string> language,
             std::string task, int64_t max_new_tokens) {
            auto options = transcribe_options(std::move(language), std::move(task), max_new_tokens);
            py::gil_scoped_release release;
            return pipeline.generate(wave, options);
          },
          py::arg("wave"), py::arg("language") = py::none(), py::arg("task") = "transcribe",
          py::arg("max_new_tokens") = 0)
      .def(
          "transcribe",
          [](models::WhisperPipeline& pipeline, const at::Tensor& wave, std::optional<std::string> language,
             std::string task, int64_t max_new_tokens) {
            auto options = transcribe_options(std::move(language), std::move(task), max_new_tokens);
            py::gil_scoped_release release;
            return pipeline.transcribe(wave, options);
          },
          py::arg("wave"), py::arg("language") = py::none(), py::arg("task") = "transcribe",
          py::arg("max_new_tokens") = 0)
      .def(
          "prompt",
          [](models::WhisperPipeline& pipeline, const at::Tensor& mel, std::optional<std::string> language,
             std::string task) {
            auto options = transcribe_options(std::move(language), std::move(task), 0);
            py::gil_scoped_release release;
            return pipeline.prompt(mel, options);
          },
          py::arg("mel"), py::arg("language") = py::none(), py::arg("task") = "transcribe")
      .def_property_readonly("suppress_tokens",
                             [](const models::WhisperPipeline& p) { return p.settings().suppress_tokens; })
      .def_property_readonly("begin_suppress_tokens",
                             [](const models::WhisperPipeline& p) { return p.settings().begin_suppress_tokens; });
}

}  // namespace speechlens::python
