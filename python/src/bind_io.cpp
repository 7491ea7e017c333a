#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "bindings.h"
#include "speechlens/io/safetensors.h"

namespace speechlens::python {

namespace {

py::dict load_all(const io::SafetensorsFile& file) {
  py::dict tensors;
  for (const auto& name : file.names()) tensors[py::str(name)] = file.get(name);
  return tensors;
}

}  // namespace

void bind_io(py::module_& m) {
  auto io_module = m.def_submodule("io", "Checkpoint I/O: safetensors files (memory-mapped).");

  py::class_<io::SafetensorsFile>(io_module, "SafetensorsFile",
                                  "A validated, memory-mapped safetensors file. get() returns "
                                  "zero-copy, copy-on-write views of the mapping.")
      .def(py::init(&io::SafetensorsFile::open), py::arg("path"))
      .def_static("open", &io::SafetensorsFile::open, py::arg("path"))
      .def_property_readonly("path", &io::SafetensorsFile::path)
      .def("names", &io::SafetensorsFile::names, "Tensor names, sorted.")
      .def("keys", &io::SafetensorsFile::names, "Tensor names, sorted.")
      .def("__len__", &io::SafetensorsFile::size)
      .def("__contains__", &io::SafetensorsFile::contains, py::arg("name"))
      .def("contains", &io::SafetensorsFile::contains, py::arg("name"))
      .def("dtype", &io::SafetensorsFile::dtype, py::arg("name"))
      .def("shape", &io::SafetensorsFile::shape, py::arg("name"))
      .def("get", &io::SafetensorsFile::get, py::arg("name"))
      .def("__getitem__", &io::SafetensorsFile::get, py::arg("name"))
      .def("metadata", &io::SafetensorsFile::metadata)
      .def("to_dict", &load_all, "Every tensor by name.")
      .def(
          "data_range",
          [](const io::SafetensorsFile& file) {
            return py::make_tuple(reinterpret_cast<uintptr_t>(file.data_begin()),
                                  file.data_size());
          },
          "(address, size) of the mapped data buffer: a tensor whose data_ptr() lies inside is a "
          "view, not a copy.")
      .def("__repr__", [](const io::SafetensorsFile& file) {
        return "<SafetensorsFile " + file.path().string() + " (" + std::to_string(file.size()) +
               " tensors)>";
      });

  io_module.def(
      "load_safetensors",
      [](const std::filesystem::path& path) { return load_all(io::SafetensorsFile::open(path)); },
      py::arg("path"),
      "All tensors of a safetensors file as {name: tensor}; the tensors view the mapped file.");
  io_module.def(
      "save_safetensors",
      [](const std::filesystem::path& path, const std::map<std::string, at::Tensor>& tensors,
         const std::optional<std::map<std::string, std::string>>& metadata) {
        std::vector<std::pair<std::string, at::Tensor>> items(tensors.begin(), tensors.end());
        py::gil_scoped_release no_gil;
        io::save_safetensors(path, items, metadata.value_or(std::map<std::string, std::string>{}));
      },
      py::arg("path"), py::arg("tensors"), py::arg("metadata") = py::none(),
      "Writes {name: tensor} in the safetensors format, as safetensors.torch.save_file does.");
}

}  // namespace speechlens::python
