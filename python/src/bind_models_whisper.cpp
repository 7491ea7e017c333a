// HookedWhisper's own methods; the HookedModel contract is bound in bind_models.cpp.
#include "bindings.h"
#include "speechlens/models/whisper.h"

namespace speechlens::python {

void bind_models_whisper(py::module_& root) {
  auto m = root.attr("models").cast<py::module_>();
  using GilRelease = py::call_guard<py::gil_scoped_release>;
  py::class_<models::HookedWhisper, models::HookedModel>(m, "HookedWhisper", "Whisper with hook points.")
      .def(
          "encode",
          [](models::HookedWhisper& model, const at::Tensor& mel, std::optional<at::Tensor> lengths,
             std::optional<std::string> stop_at) {
            models::RunOptions options;
            options.stop_at = std::move(stop_at);
            py::gil_scoped_release release;
            return model.encode(mel, optional_tensor(lengths), options);
          },
          py::arg("mel"), py::arg("mel_lengths") = py::none(), py::arg("stop_at") = py::none(),
          "Audio states [B, T/2, D] after ln_post (or the stop_at activation).")
      .def(
          "decode",
          [](models::HookedWhisper& model, const at::Tensor& tokens, const at::Tensor& audio) {
            return model.decode(tokens, audio);
          },
          py::arg("tokens"), py::arg("audio"), GilRelease(), "Decoder logits for tokens over audio states.")
      .def("default_prompt", &models::HookedWhisper::default_prompt, py::arg("language") = py::none(),
           py::arg("task") = "transcribe",
           "<|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|> (no tokenizer needed).")
      .def(
          "transcribe_with",
          [](models::HookedWhisper& model, const std::vector<at::Tensor>& waves, std::optional<int64_t> rate,
             std::optional<std::string> language, std::string task, int64_t max_new_tokens, bool ids) -> py::object {
            models::WhisperTranscribeOptions options{std::move(language), std::move(task), max_new_tokens};
            if (ids) {
              std::vector<std::vector<int64_t>> out;
              {
                py::gil_scoped_release release;
                out = model.transcribe_ids(waves, rate, options);
              }
              return py::cast(out);
            }
            std::vector<std::string> out;
            {
              py::gil_scoped_release release;
              out = model.transcribe(waves, rate, options);
            }
            return py::cast(out);
          },
          py::arg("waves"), py::arg("sampling_rate") = py::none(), py::arg("language") = py::none(),
          py::arg("task") = "transcribe", py::arg("max_new_tokens") = 0, py::arg("ids") = false,
          "Greedy transcription with a language / task (texts, or token ids with ids=True).")
      .def("detect_language", &models::HookedWhisper::detect_language, py::arg("mel"),
           py::arg("mel_lengths") = at::Tensor(), GilRelease())
      .def_property_readonly("has_tokenizer", &models::HookedWhisper::has_tokenizer)
      .def_property_readonly("suppress_tokens",
                             [](const models::HookedWhisper& m) { return m.generation_config().suppress_tokens; })
      .def_property_readonly("begin_suppress_tokens", [](const models::HookedWhisper& m) {
        return m.generation_config().begin_suppress_tokens;
      });
}

}  // namespace speechlens::python
