// HookedHubert (HuBERT / wav2vec2); the HookedModel base it extends is bound in bind_models.cpp.
#include <nlohmann/json.hpp>

#include "bindings.h"
#include "speechlens/models/hubert.h"

namespace speechlens::python {

void bind_models_hubert(py::module_& root) {
  auto m = root.attr("models").cast<py::module_>();
  py::class_<models::HookedHubert, models::HookedModel>(m, "HookedHubert",
                                                        "HuBERT / wav2vec2 (base, CTC) with hook points.")
      .def(py::init([](const std::string& path, std::optional<at::Device> device,
                       std::optional<at::ScalarType> dtype) {
             py::gil_scoped_release release;
             return models::HookedHubert::from_pretrained(path, models::LoadOptions{dtype, device});
           }),
           py::arg("path"), py::arg("device") = py::none(), py::arg("dtype") = py::none())
      .def(
          "prepare",
          [](const models::HookedHubert& model, const std::vector<at::Tensor>& waves) {
            audio::WaveBatch batch;
            {
              py::gil_scoped_release release;
              batch = model.prepare(waves);
            }
            return py::make_tuple(batch.input_values,
                                  batch.attention_mask.defined() ? py::cast(batch.attention_mask) : py::none());
          },
          py::arg("waves"),
          "Raw clips -> (normalised right-padded batch [B, T], attention mask or None) as the checkpoint's "
          "preprocessor_config.json says.")
      .def(
          "encode",
          [](models::HookedHubert& model, const at::Tensor& wave, std::optional<at::Tensor> lengths) {
            py::gil_scoped_release release;
            return model.encode(wave, lengths.value_or(at::Tensor()));
          },
          py::arg("wave"), py::arg("sample_lengths") = py::none(), "Last hidden state [B, T, D].")
      .def(
          "ctc_logits", [](const models::HookedHubert& model, const at::Tensor& hidden) { return model.ctc_logits(hidden); },
          py::arg("hidden"))
      .def(
          "frames_for_samples",
          [](const models::HookedHubert& model, const at::Tensor& samples) { return model.frames_for_samples(samples); },
          py::arg("sample_lengths"), "Encoder frames per clip length (HF's _get_feat_extract_output_lengths).")
      .def(
          "transcribe",
          [](models::HookedHubert& model, const std::vector<at::Tensor>& waves, bool skip_special_tokens) {
            py::gil_scoped_release release;
            return model.transcribe(waves, skip_special_tokens);
          },
          py::arg("waves"), py::arg("skip_special_tokens") = false, "Greedy CTC transcription of raw clips.")
      .def(
          "ctc_decode",
          [](const models::HookedHubert& model, const std::vector<int64_t>& ids, bool skip_special_tokens) {
            return model.ctc_decoder().decode(ids, skip_special_tokens);
          },
          py::arg("frame_ids"), py::arg("skip_special_tokens") = false,
          "Text of one CTC id per frame (collapse repeats, drop blanks, '|' -> space).")
      .def(
          "apply_final_norm",
          [](const models::HookedHubert& model, const at::Tensor& x) { return model.apply_final_norm(x); },
          py::arg("residual"), "The stable variant's final norm without its hook (identity for post-LN).");
}

}  // namespace speechlens::python
