#pragma once
// What every binding file shares: the pybind11 / torch includes, the per-area entry points, and
// the few conversions between Python objects and the C++ API (callables, selectors, optional
// tensors). Bindings declare; logic lives in the C++ core.
#include <torch/python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "speechlens/hooks/hook_registry.h"
#include "speechlens/models/hooked_model.h"

namespace speechlens::python {

namespace py = pybind11;

void bind_util(py::module_& m);
void bind_io(py::module_& m);
void bind_hooks(py::module_& m);
void bind_models(py::module_& m);
void bind_models_whisper(py::module_& m);      // after bind_models (extends its HookedModel)
void bind_models_hubert(py::module_& m);       // after bind_models
void bind_models_qwen2_audio(py::module_& m);  // after bind_models
void bind_audio(py::module_& m);
void bind_text(py::module_& m);
void bind_analysis(py::module_& m);
void bind_ctranslate2(py::module_& m);

// An undefined tensor for None.
inline at::Tensor optional_tensor(const std::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }
// None for an undefined tensor.
inline py::object tensor_or_none(const at::Tensor& t) { return t.defined() ? py::cast(t) : py::none(); }

// A Python callable shared by C++ callers on any thread, released with the GIL held.
std::shared_ptr<py::object> shared_callable(py::object fn);
// A Python callable as a C++ hook: called as fn(tensor, hook=context) with the GIL held only
// around the call; a Python exception propagates unchanged to the caller of the forward.
hooks::HookFn python_hook(py::object fn);
// str (exact name or glob), compiled re.Pattern, a callable name -> bool, or a list / tuple of
// those (their union).
hooks::HookSelector to_selector(const py::handle& selector);
// "fwd" / "forward" or "bwd" / "backward".
hooks::Direction direction_from(const std::string& dir);
// "encoder", "decoder", "lm", or a stack's hook prefix ("audio_encoder").
hooks::Stack stack_from(const models::HookedModel& model, const std::string& stack);
// ModelInputs from a ModelInputs or a dict with its field names.
models::ModelInputs to_inputs(const py::handle& inputs);

// The run options of one call from Python arguments: hooks as [(selector, fn)], stop_at,
// start_at with its value, the audio encoder's output.
models::RunOptions run_options(const py::object& fwd_hooks, const py::object& bwd_hooks,
                               std::optional<std::string> stop_at, std::optional<std::string> start_at,
                               std::optional<at::Tensor> start_value, std::optional<at::Tensor> encoder_output);

}  // namespace speechlens::python
