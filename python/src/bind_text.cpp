#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "bindings.h"
#include "speechlens/text/bpe_tokenizer.h"
#include "speechlens/text/unicode.h"
#include "speechlens/text/whisper_tokenizer.h"

namespace speechlens::python {

using text::BpeTokenizer;
using text::WhisperTokenizer;

void bind_text(py::module_& parent) {
  py::module_ m = parent.def_submodule("text", "Byte-level BPE tokenizers (Whisper, Qwen2)");

  m.def("normalize_nfc", py::overload_cast<std::string_view>(&text::normalize_nfc), py::arg("text"),
        "Unicode NFC of a string.");
  m.def("unicode_version", &text::unicode_version);

  py::class_<BpeTokenizer>(m, "BpeTokenizer")
      .def_static("from_dir", &BpeTokenizer::from_dir, py::arg("path"),
                  "Loads tokenizer.json, or vocab.json + merges.txt, from a folder.")
      .def_static("from_file", &BpeTokenizer::from_tokenizer_json, py::arg("tokenizer_json"))
      .def("encode", &BpeTokenizer::encode, py::arg("text"),
           py::call_guard<py::gil_scoped_release>(), "Token ids; no special tokens are added.")
      .def("pre_tokenize", &BpeTokenizer::pre_tokenize, py::arg("text"))
      .def("decode", &BpeTokenizer::decode, py::arg("ids"), py::arg("skip_special_tokens") = false,
           py::arg("strict") = false)
      .def("token_to_id", &BpeTokenizer::token_to_id, py::arg("token"))
      .def("id_to_token", &BpeTokenizer::id_to_token, py::arg("id"))
      .def("is_special", &BpeTokenizer::is_special, py::arg("id"))
      .def_property_readonly("vocab_size", &BpeTokenizer::vocab_size)
      .def_property_readonly("normalizes_nfc", &BpeTokenizer::normalizes_nfc)
      .def_property_readonly("split_regex", &BpeTokenizer::split_regex)
      .def("__len__", &BpeTokenizer::vocab_size);

  py::class_<WhisperTokenizer>(m, "WhisperTokenizer")
      .def_static("from_dir", &WhisperTokenizer::from_dir, py::arg("path"),
                  py::arg("multilingual") = py::none())
      .def("encode", &WhisperTokenizer::encode, py::arg("text"),
           py::call_guard<py::gil_scoped_release>())
      .def("decode", &WhisperTokenizer::decode, py::arg("ids"), py::arg("skip_special_tokens") = true)
      .def("sot_sequence", &WhisperTokenizer::sot_sequence, py::arg("language") = py::none(),
           py::arg("task") = "transcribe", py::arg("timestamps") = false)
      .def("token_to_id", [](const WhisperTokenizer& t, std::string_view token) { return t.bpe().token_to_id(token); },
           py::arg("token"))
      .def("id_to_token", &WhisperTokenizer::id_to_token, py::arg("id"))
      .def("special_token", &WhisperTokenizer::special_token, py::arg("content"))
      .def("language_token", &WhisperTokenizer::language_token, py::arg("language"))
      .def("language_of", &WhisperTokenizer::language_of, py::arg("id"))
      .def_property_readonly("language_codes", &WhisperTokenizer::language_codes)
      .def_property_readonly("language_token_ids", &WhisperTokenizer::language_token_ids)
      .def("is_timestamp", &WhisperTokenizer::is_timestamp, py::arg("id"))
      .def("timestamp_token", &WhisperTokenizer::timestamp_token, py::arg("seconds"))
      .def("timestamp_seconds", &WhisperTokenizer::timestamp_seconds, py::arg("id"))
      .def_property_readonly("multilingual", &WhisperTokenizer::multilingual)
      .def_property_readonly("vocab_size", &WhisperTokenizer::vocab_size)
      .def_property_readonly("bpe", &WhisperTokenizer::bpe, py::return_value_policy::reference_internal)
      .def_property_readonly("eot", &WhisperTokenizer::eot)
      .def_property_readonly("sot", &WhisperTokenizer::sot)
      .def_property_readonly("transcribe", &WhisperTokenizer::transcribe)
      .def_property_readonly("translate", &WhisperTokenizer::translate)
      .def_property_readonly("sot_prev", &WhisperTokenizer::sot_prev)
      .def_property_readonly("sot_lm", &WhisperTokenizer::sot_lm)
      .def_property_readonly("no_timestamps", &WhisperTokenizer::no_timestamps)
      .def_property_readonly("no_speech", &WhisperTokenizer::no_speech)
      .def_property_readonly("timestamp_begin", &WhisperTokenizer::timestamp_begin);
}

}  // namespace speechlens::python
