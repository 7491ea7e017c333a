#pragma once
#include <torch/python.h>
#include <pybind11/pybind11.h>

namespace speechlens::python {

namespace py = pybind11;

void bind_util(py::module_& m);
void bind_text(py::module_& m);

}  // namespace speechlens::python
