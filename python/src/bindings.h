#pragma once
#include <torch/python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "speechlens/hooks/hook_registry.h"

namespace speechlens::python {

namespace py = pybind11;

void bind_util(py::module_& m);
void bind_io(py::module_& m);
void bind_hooks(py::module_& m);
void bind_models(py::module_& m);
void bind_models_hubert(py::module_& m);  // after bind_models (extends its HookedModel)

// A Python callable as a C++ hook: called as fn(tensor, hook=context) with the GIL held only
// around the call; a Python exception propagates unchanged to the caller of the forward.
hooks::HookFn python_hook(py::function fn);
// str (exact name or glob), compiled re.Pattern, or a callable name -> bool.
hooks::HookSelector to_selector(const py::handle& selector);
void bind_audio(py::module_& m);
void bind_text(py::module_& m);
void bind_models_qwen2_audio(py::module_& m);  // after bind_models (needs HookedModel)
void bind_analysis(py::module_& m);
void bind_ctranslate2(py::module_& m);
void bind_whisper_pipeline(py::module_& m);

}  // namespace speechlens::python
