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
  std::vector<hooks::TimeAxis> axes;
  hooks::RunState run;

  const std::string& unit() const {
    static const std::string none;
    return axes.empty() ? none : axes.front().unit;
  }
  at::Tensor valid_lengths() const { return run.lengths(unit()); }
  at::Tensor position_mask(int64_t positions) const { return run.mask(unit(), positions); }
};

}  // namespace

std::shared_ptr<py::object> shared_callable(py::object fn) {
  return std::shared_ptr<py::object>(new py::object(std::move(fn)), [](py::object* o) {
    py::gil_scoped_acquire gil;
    delete o;
  });
}

hooks::HookFn python_hook(py::object fn) {
  if (!PyCallable_Check(fn.ptr())) {
    throw InvalidInput(fmt::format("a hook must be callable, got {}", std::string(py::str(py::type::of(fn)))));
  }
  auto callable = shared_callable(std::move(fn));
  return [callable](const at::Tensor& activation, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
    py::gil_scoped_acquire gil;
    PyHookContext info{ctx.name(),
                       hooks::to_string(ctx.stack()),
                       ctx.layer(),
                       ctx.decode_step(),
                       hooks::to_string(ctx.direction),
                       ctx.time_axes(),
                       ctx.run};
    py::object out = (*callable)(activation, py::arg("hook") = py::cast(std::move(info)));
    if (out.is_none()) return std::nullopt;
    if (!THPVariable_Check(out.ptr())) {
      throw InvalidInput(fmt::format("hook at '{}' returned {}; a hook returns None or a torch.Tensor", ctx.name(),
                                     std::string(py::str(py::type::of(out)))));
    }
    return THPVariable_Unpack(out.ptr());
  };
}

hooks::HookSelector to_selector(const py::handle& selector) {
  if (py::isinstance<py::str>(selector)) return hooks::HookSelector(selector.cast<std::string>());
  if (py::isinstance<py::list>(selector) || py::isinstance<py::tuple>(selector) ||
      py::isinstance(selector, py::module_::import("builtins").attr("set"))) {
    std::vector<hooks::HookSelector> members;
    for (const auto& item : selector) members.push_back(to_selector(item));
    if (members.empty()) throw InvalidInput("an empty list of hook names selects nothing");
    return hooks::HookSelector::any_of(std::move(members));
  }
  py::object re_pattern = py::module_::import("re").attr("Pattern");
  if (py::isinstance(selector, re_pattern)) {
    return hooks::HookSelector::regex(selector.attr("pattern").cast<std::string>());
  }
  if (PyCallable_Check(selector.ptr())) {
    auto callable = shared_callable(py::reinterpret_borrow<py::object>(selector));
    return hooks::HookSelector::predicate(
        [callable](const std::string& name) {
          py::gil_scoped_acquire gil;
          return (*callable)(name).cast<bool>();
        },
        "<callable filter>");
  }
  throw InvalidInput(fmt::format("a hook selector is a name, a glob, a compiled regex, a callable or a list of "
                                 "those; got {}",
                                 std::string(py::str(py::type::of(selector)))));
}

hooks::Direction direction_from(const std::string& dir) {
  if (dir == "fwd" || dir == "forward") return hooks::Direction::forward;
  if (dir == "bwd" || dir == "backward") return hooks::Direction::backward;
  throw InvalidInput("hook direction must be 'fwd' or 'bwd', got '" + dir + "'");
}

void bind_hooks(py::module_& root) {
  auto m = root.def_submodule("hooks", "Hook points, contexts and activation caches");

  py::class_<PyHookContext>(m, "HookContext",
                            "What a hook receives as `hook=`: the point's name, stack, layer, decode step, its "
                            "time axes and the batch's valid lengths.")
      .def_readonly("name", &PyHookContext::name)
      .def_readonly("stack", &PyHookContext::stack)
      .def_readonly("decode_step", &PyHookContext::decode_step)
      .def_readonly("direction", &PyHookContext::direction)
      .def_property_readonly("unit", &PyHookContext::unit,
                             "Unit of the activation's main time axis ('mel', 'encoder', 'samples', 'decoder', "
                             "'lm', ...; '' when it has none).")
      .def_property_readonly(
          "time_axes",
          [](const PyHookContext& c) {
            py::list out;
            for (const auto& a : c.axes) out.append(py::make_tuple(a.dim, a.unit));
            return out;
          },
          "[(dim, unit)] of the activation's time axes, the main one first.")
      .def_property_readonly(
          "valid_lengths", [](const PyHookContext& c) { return tensor_or_none(c.valid_lengths()); },
          "[batch] valid positions along the main time axis, or None when every position is valid.")
      .def("layer", [](const PyHookContext& c) { return c.layer_index; }, "Block index, or -1 for model-level points.")
      .def(
          "position_mask", [](const PyHookContext& c, int64_t positions) { return tensor_or_none(c.position_mask(positions)); },
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
             if (max_bytes && *max_bytes < 0) throw InvalidInput(fmt::format("max_bytes must be >= 0, got {}", *max_bytes));
             options.max_bytes = max_bytes;
             return std::make_shared<hooks::ActivationCache>(options);
           }),
           py::arg("detach") = true, py::arg("device") = py::none(), py::arg("dtype") = py::none(),
           py::arg("remove_batch_dim") = false, py::arg("trim_padding") = false, py::arg("max_bytes") = py::none())
      .def("names", &hooks::ActivationCache::names)
      .def("steps", &hooks::ActivationCache::steps, py::arg("name"))
      .def(
          "lengths", [](const hooks::ActivationCache& c, const std::string& name) { return tensor_or_none(c.lengths(name)); },
          py::arg("name"), "[batch] valid lengths along the activation's main time axis, or None.")
      .def(
          "mask", [](const hooks::ActivationCache& c, const std::string& name) { return tensor_or_none(c.mask(name)); },
          py::arg("name"), "[batch, positions] bool mask of real positions along the main time axis, or None.")
      .def(
          "time_axes",
          [](const hooks::ActivationCache& c, const std::string& name) {
            py::list out;
            for (const auto& a : c.time_axes(name)) out.append(py::make_tuple(a.dim, a.unit));
            return out;
          },
          py::arg("name"))
      .def("__len__", &hooks::ActivationCache::size)
      .def_property_readonly("bytes", &hooks::ActivationCache::bytes)
      .def("clear", &hooks::ActivationCache::clear);

  m.def("glob_match", &hooks::glob_match, py::arg("pattern"), py::arg("name"),
        "Shell-style glob match as hook selectors use it.");
}

}  // namespace speechlens::python
