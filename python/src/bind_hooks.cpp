#include <fmt/format.h>

#include "bindings.h"
#include "speechlens/hooks/activation_cache.h"
#include "speechlens/util/error.h"

namespace speechlens::python {

namespace {

// What a Python hook receives as `hook`: a snapshot of the C++ context, valid after the call.
struct PyHookContext {
  std::string name;
  std::string stack;
  int64_t layer_index;
  int64_t decode_step;
  std::string direction;
  at::Tensor valid_lengths;

  int64_t layer() const { return layer_index; }
  at::Tensor position_mask(int64_t positions) const {
    if (!valid_lengths.defined()) return {};
    return at::arange(positions, valid_lengths.options()).unsqueeze(0) < valid_lengths.unsqueeze(1);
  }
};

}  // namespace

hooks::HookFn python_hook(py::function fn) {
  // The callable is released with the GIL held, whichever thread drops the last hook copy.
  std::shared_ptr<py::object> callable(new py::object(std::move(fn)), [](py::object* o) {
    py::gil_scoped_acquire gil;
    delete o;
  });
  return [callable](const at::Tensor& activation, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
    py::gil_scoped_acquire gil;
    PyHookContext info{ctx.name(),
                       hooks::to_string(ctx.stack()),
                       ctx.layer(),
                       ctx.decode_step(),
                       ctx.direction == hooks::Direction::forward ? "fwd" : "bwd",
                       ctx.valid_lengths()};
    py::object out = (*callable)(activation, py::arg("hook") = py::cast(std::move(info)));
    if (out.is_none()) return std::nullopt;
    if (!THPVariable_Check(out.ptr())) {
      throw InvalidInput(fmt::format("hook at '{}' returned {}; a hook returns None or a torch.Tensor",
                                     ctx.name(), std::string(py::str(py::type::of(out)))));
    }
    return THPVariable_Unpack(out.ptr());
  };
}

hooks::HookSelector to_selector(const py::handle& selector) {
  if (py::isinstance<py::str>(selector)) return hooks::HookSelector(selector.cast<std::string>());
  py::object re_pattern = py::module_::import("re").attr("Pattern");
  if (py::isinstance(selector, re_pattern)) {
    return hooks::HookSelector::regex(selector.attr("pattern").cast<std::string>());
  }
  if (PyCallable_Check(selector.ptr())) {
    auto fn = py::reinterpret_borrow<py::function>(selector);
    std::shared_ptr<py::object> callable(new py::object(fn), [](py::object* o) {
      py::gil_scoped_acquire gil;
      delete o;
    });
    return hooks::HookSelector::predicate(
        [callable](const std::string& name) {
          py::gil_scoped_acquire gil;
          return (*callable)(name).cast<bool>();
        },
        "<callable filter>");
  }
  throw InvalidInput(fmt::format("a hook selector is a name, a glob, a compiled regex or a callable; got {}",
                                 std::string(py::str(py::type::of(selector)))));
}

void bind_hooks(py::module_& root) {
  auto m = root.def_submodule("hooks", "Hook points, contexts and activation caches");

  py::class_<PyHookContext>(m, "HookContext",
                            "What a hook receives as `hook=`: the point's name, stack, layer, "
                            "decode step and the batch's valid lengths.")
      .def_readonly("name", &PyHookContext::name)
      .def_readonly("stack", &PyHookContext::stack)
      .def_readonly("decode_step", &PyHookContext::decode_step)
      .def_readonly("direction", &PyHookContext::direction)
      .def_property_readonly(
          "valid_lengths",
          [](const PyHookContext& c) -> py::object {
            return c.valid_lengths.defined() ? py::cast(c.valid_lengths) : py::none();
          },
          "[batch] valid positions of this stack, or None when every position is valid.")
      .def("layer", &PyHookContext::layer, "Block index, or -1 for model-level points.")
      .def(
          "position_mask",
          [](const PyHookContext& c, int64_t positions) -> py::object {
            auto mask = c.position_mask(positions);
            return mask.defined() ? py::cast(mask) : py::none();
          },
          py::arg("positions"), "[batch, positions] bool mask of real (unpadded) positions, or None.")
      .def("__repr__", [](const PyHookContext& c) {
        return fmt::format("<HookContext {} layer={} step={}>", c.name, c.layer_index, c.decode_step);
      });

  py::class_<hooks::ActivationCache, std::shared_ptr<hooks::ActivationCache>>(
      m, "ActivationCacheStore", "C++ activation store filled by C++ recording hooks (no Python per call).")
      .def(py::init([](bool detach, std::optional<std::string> device, std::optional<at::ScalarType> dtype,
                       bool remove_batch_dim, bool trim_padding, std::optional<int64_t> max_bytes) {
             hooks::CacheOptions options;
             options.detach = detach;
             if (device) options.device = at::Device(*device);
             options.dtype = dtype;
             options.remove_batch_dim = remove_batch_dim;
             options.trim_padding = trim_padding;
             options.max_bytes = max_bytes;
             return std::make_shared<hooks::ActivationCache>(options);
           }),
           py::arg("detach") = true, py::arg("device") = py::none(), py::arg("dtype") = py::none(),
           py::arg("remove_batch_dim") = false, py::arg("trim_padding") = false,
           py::arg("max_bytes") = py::none())
      .def("names", &hooks::ActivationCache::names)
      .def("steps", &hooks::ActivationCache::steps, py::arg("name"))
      .def("__len__", &hooks::ActivationCache::size)
      .def_property_readonly("bytes", &hooks::ActivationCache::bytes)
      .def("clear", &hooks::ActivationCache::clear);

  m.def("glob_match", &hooks::glob_match, py::arg("pattern"), py::arg("name"),
        "Shell-style glob match as hook selectors use it.");
}

}  // namespace speechlens::python
