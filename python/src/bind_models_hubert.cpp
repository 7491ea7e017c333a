// HookedHubert's own methods (HuBERT / wav2vec2); the HookedModel contract is bound in
// bind_models.cpp.
#include "bindings.h"
#include "speechlens/models/hubert.h"

namespace speechlens::python {

void bind_models_hubert(py::module_& root) {
  auto m = root.attr("models").cast<py::module_>();
  using GilRelease = py::call_guard<py::gil_scoped_release>;
  py::class_<models::HookedHubert, models::HookedModel>(m, "HookedHubert",
                                                        "HuBERT / wav2vec2 (base, CTC) with hook points.")
      .def(
          "encode",
          [](models::HookedHubert& model, const at::Tensor& wave, std::optional<at::Tensor> lengths) {
            return model.encode(wave, optional_tensor(lengths));
          },
          py::arg("wave"), py::arg("sample_lengths") = py::none(), GilRelease(), "Last hidden state [B, T, D].")
      .def("ctc_logits", &models::HookedHubert::ctc_logits, py::arg("hidden"))
      .def(
          "frames_for_samples",
          [](const models::HookedHubert& model, const at::Tensor& samples) { return model.frames_for_samples(samples); },
          py::arg("sample_lengths"), "Encoder frames per clip length (HF's _get_feat_extract_output_lengths).")
      .def(
          "transcribe_clips",
          [](models::HookedHubert& model, const std::vector<at::Tensor>& waves, bool skip_special_tokens) {
            return model.transcribe(waves, skip_special_tokens);
          },
          py::arg("waves"), py::arg("skip_special_tokens") = false, GilRelease(),
          "Greedy CTC transcription of raw 16 kHz clips.")
      .def(
          "ctc_decode",
          [](const models::HookedHubert& model, const std::vector<int64_t>& ids, bool skip_special_tokens) {
            return model.ctc_decoder().decode(ids, skip_special_tokens);
          },
          py::arg("frame_ids"), py::arg("skip_special_tokens") = false,
          "Text of one CTC id per frame (collapse repeats, drop blanks, '|' -> space).")
      .def_property_readonly("can_transcribe", &models::HookedHubert::can_transcribe)
      .def("set_max_input_seconds", &models::HookedHubert::set_max_input_seconds, py::arg("seconds"));
}

}  // namespace speechlens::python
