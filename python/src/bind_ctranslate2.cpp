// speechlens._C.io: CTranslate2 model folders and their conversion to HF checkpoints.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "bindings.h"
#include "speechlens/io/ctranslate2.h"

namespace speechlens::python {

void bind_ctranslate2(py::module_& root) {
  auto m = root.def_submodule("io", "Checkpoint I/O");
  py::class_<io::CTranslate2Model>(m, "CTranslate2Model", "A CTranslate2 model.bin, read whole into memory.")
      .def(py::init([](const std::filesystem::path& path) {
             py::gil_scoped_release release;
             return io::CTranslate2Model::read(path);
           }),
           py::arg("path"), "Read a model.bin, or the folder holding one.")
      .def_property_readonly("binary_version", &io::CTranslate2Model::binary_version)
      .def_property_readonly("spec_name", &io::CTranslate2Model::spec_name)
      .def_property_readonly("spec_revision", &io::CTranslate2Model::spec_revision)
      .def_property_readonly("aliases", &io::CTranslate2Model::aliases)
      .def("names", &io::CTranslate2Model::names, "Stored variable names, sorted (aliases excluded).")
      .def("__contains__", &io::CTranslate2Model::contains, py::arg("name"))
      .def("get", &io::CTranslate2Model::get, py::arg("name"), "The tensor as stored (aliases resolved).")
      .def("get_float", &io::CTranslate2Model::get_float, py::arg("name"),
           "float32, dequantizing int8/int16 weights by their _scale.");
  m.def(
      "convert_ctranslate2_whisper",
      [](const std::filesystem::path& ct2_dir, const std::filesystem::path& out_dir) {
        py::gil_scoped_release release;
        io::convert_ctranslate2_whisper(ct2_dir, out_dir);
      },
      py::arg("ct2_dir"), py::arg("out_dir"),
      "Convert a CTranslate2 Whisper folder into an HF checkpoint folder (float32 safetensors).");
  m.def(
      "whisper_hf_state_dict",
      [](const io::CTranslate2Model& model) {
        py::dict out;
        for (auto& [name, tensor] : io::whisper_hf_state_dict(model)) out[py::str(name)] = tensor;
        return out;
      },
      py::arg("model"), "The HF WhisperForConditionalGeneration state dict of a CTranslate2 Whisper model.");
}

}  // namespace speechlens::python
