// Bindings of HookedQwen2Audio and its processor (speechlens._C.models).
#include "bindings.h"
#include "speechlens/models/qwen2_audio.h"
#include "speechlens/models/qwen2_audio_processor.h"
#include "speechlens/util/error.h"

namespace speechlens::python {

namespace {

at::Tensor or_empty(const std::optional<at::Tensor>& t) { return optional_tensor(t); }

models::PaddingSide padding_side_from(const std::string& side) {
  if (side == "left") return models::PaddingSide::left;
  if (side == "right") return models::PaddingSide::right;
  throw InvalidInput("padding_side must be 'left' or 'right', got '" + side + "'");
}

py::dict batch_to_dict(const models::Qwen2AudioBatch& batch) {
  py::dict out;
  out["input_ids"] = batch.input_ids;
  out["attention_mask"] = batch.attention_mask;
  if (batch.input_features.defined()) {
    out["input_features"] = batch.input_features;
    out["feature_attention_mask"] = batch.feature_attention_mask;
    out["feature_lengths"] = batch.feature_lengths;
  }
  out["audio_token_counts"] = batch.audio_token_counts;
  return out;
}

}  // namespace

void bind_models_qwen2_audio(py::module_& root) {
  py::module_ m = root.attr("models");

  m.def("qwen2_audio_token_count", &models::qwen2_audio_token_count, py::arg("mel_frames"),
        "Audio tokens Qwen2-Audio gives a clip of `mel_frames` valid log-mel frames.");

  py::class_<models::HookedQwen2Audio, models::HookedModel>(m, "HookedQwen2Audio", "Qwen2-Audio with hook points.")
      .def(
          "encode_audio",
          [](models::HookedQwen2Audio& model, const at::Tensor& mel, std::optional<at::Tensor> lengths) {
            models::Qwen2AudioEncoding encoding;
            {
              py::gil_scoped_release release;
              encoding = model.encode_audio(mel, or_empty(lengths));
            }
            return py::make_tuple(encoding.features, encoding.token_counts);
          },
          py::arg("mel"), py::arg("mel_lengths") = py::none(),
          "(projected audio features [clips, frames/4, d_model], audio tokens per clip [clips]).")
      .def("audio_positions", &models::HookedQwen2Audio::audio_positions, py::arg("input_ids"))
      .def(
          "text_positions",
          [](const models::HookedQwen2Audio& model, const at::Tensor& ids, std::optional<at::Tensor> mask) {
            return model.text_positions(ids, or_empty(mask));
          },
          py::arg("input_ids"), py::arg("token_mask") = py::none())
      .def_static("positions_from_mask", &models::HookedQwen2Audio::positions_from_mask, py::arg("token_mask"))
      .def_property_readonly("has_processor", &models::HookedQwen2Audio::has_processor)
      .def(
          "processor", [](const models::HookedQwen2Audio& model) -> const models::Qwen2AudioProcessor& {
            return model.processor();
          },
          py::return_value_policy::reference_internal);

  py::class_<models::Qwen2AudioProcessor>(m, "Qwen2AudioProcessor",
                                          "Chat template, log-mel, <|AUDIO|> expansion and Qwen2 tokenizer.")
      .def_static(
          "from_dir",
          [](const std::string& dir) {
            py::gil_scoped_release release;
            return models::Qwen2AudioProcessor::from_dir(dir);
          },
          py::arg("dir"))
      .def_static(
          "chat_prompt",
          [](const std::string& prompt, int64_t audio_count, const std::string& system) {
            return models::Qwen2AudioProcessor::chat_prompt(prompt, audio_count, system);
          },
          py::arg("prompt"), py::arg("audio_count") = 1, py::arg("system") = models::Qwen2AudioProcessor::kDefaultSystem)
      .def_static("expand_audio_tokens", &models::Qwen2AudioProcessor::expand_audio_tokens, py::arg("text"),
                  py::arg("counts"))
      .def(
          "__call__",
          [](const models::Qwen2AudioProcessor& self, const std::vector<std::string>& texts,
             const std::vector<at::Tensor>& clips, const std::string& padding_side) {
            const auto side = padding_side_from(padding_side);
            models::Qwen2AudioBatch batch;
            {
              py::gil_scoped_release release;
              batch = self(texts, clips, side);
            }
            return batch_to_dict(batch);
          },
          py::arg("texts"), py::arg("clips") = std::vector<at::Tensor>{}, py::arg("padding_side") = "left",
          "HF processor(text=texts, audio=clips): a dict of input_ids, attention_mask, input_features, "
          "feature_attention_mask, feature_lengths, audio_token_counts.")
      .def("encode", [](const models::Qwen2AudioProcessor& self, const std::string& text) {
        return self.tokenizer().encode(text);
      }, py::arg("text"))
      .def("decode", &models::Qwen2AudioProcessor::decode, py::arg("ids"), py::arg("skip_special_tokens") = true)
      .def_property_readonly("audio_token_id", &models::Qwen2AudioProcessor::audio_token_id)
      .def_property_readonly("pad_token_id", &models::Qwen2AudioProcessor::pad_token_id)
      .def_property_readonly("n_samples",
                             [](const models::Qwen2AudioProcessor& self) {
                               return self.feature_extractor().options().n_samples;
                             })
      .def_property_readonly("sampling_rate", [](const models::Qwen2AudioProcessor& self) {
        return self.feature_extractor().options().sampling_rate;
      });
}

}  // namespace speechlens::python
