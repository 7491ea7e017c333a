#include <nlohmann/json.hpp>

#include "bindings.h"
#include "speechlens/hooks/activation_cache.h"
#include "speechlens/models/whisper.h"
#include "speechlens/util/error.h"

namespace speechlens::python {

namespace {

models::LoadOptions load_options(std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
  models::LoadOptions options;
  options.device = device;
  options.dtype = dtype;
  return options;
}

hooks::Direction direction_from(const std::string& dir) {
  if (dir == "fwd" || dir == "forward") return hooks::Direction::forward;
  if (dir == "bwd" || dir == "backward") return hooks::Direction::backward;
  throw InvalidInput("hook direction must be 'fwd' or 'bwd', got '" + dir + "'");
}

at::Tensor optional_tensor(const std::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

}  // namespace

void bind_models(py::module_& root) {
  auto m = root.def_submodule("models", "Hooked model implementations");

  py::class_<models::HookedModel>(m, "HookedModel", "Base of every hooked model.")
      .def_property_readonly("family", &models::HookedModel::family)
      .def("config_json", [](const models::HookedModel& model) { return model.config_json().dump(); },
           "The configuration as a JSON string (TransformerLens-style keys).")
      .def("hook_names", &models::HookedModel::hook_names, "Every hook point name, in forward order.")
      .def(
          "forward",
          [](models::HookedModel& model, const at::Tensor& features, std::optional<at::Tensor> tokens,
             std::optional<at::Tensor> feature_lengths) {
            models::ModelInputs inputs{features, optional_tensor(tokens), optional_tensor(feature_lengths)};
            py::gil_scoped_release release;
            return model.forward(inputs);
          },
          py::arg("features"), py::arg("tokens") = py::none(), py::arg("feature_lengths") = py::none(),
          "Logits of one full forward.")
      .def(
          "add_hook",
          [](models::HookedModel& model, const py::object& selector, py::function fn, const std::string& dir,
             bool permanent) {
            return model.hooks().add(to_selector(selector), python_hook(std::move(fn)), direction_from(dir),
                                     permanent);
          },
          py::arg("selector"), py::arg("fn"), py::arg("dir") = "fwd", py::arg("permanent") = false,
          "Attaches a Python hook fn(tensor, hook) at every matching point; returns the hook ids.")
      .def(
          "add_cache_hook",
          [](models::HookedModel& model, const py::object& selector,
             std::shared_ptr<hooks::ActivationCache> cache, const std::string& dir) {
            // The hook holds the store alive; recording happens in C++ with no Python call.
            hooks::HookFn record = [cache](const at::Tensor& activation, hooks::HookContext& ctx)
                -> std::optional<at::Tensor> {
              cache->record(ctx.name(), activation, &ctx);
              return std::nullopt;
            };
            return model.hooks().add(to_selector(selector), record, direction_from(dir), false);
          },
          py::arg("selector"), py::arg("cache"), py::arg("dir") = "fwd")
      .def(
          "resolve",
          [](models::HookedModel& model, const py::object& selector) {
            return model.hooks().resolve(to_selector(selector));
          },
          py::arg("selector"), "The hook names a selector matches (error with suggestions if none).")
      .def("remove_hooks", [](models::HookedModel& model, const std::vector<hooks::HookId>& ids) {
        model.hooks().remove(ids);
      })
      .def(
          "reset_hooks",
          [](models::HookedModel& model, bool including_permanent) { model.hooks().reset(including_permanent); },
          py::arg("including_permanent") = false)
      .def_property_readonly("hook_count", [](const models::HookedModel& model) { return model.hooks().hook_count(); })
      .def(
          "active_hooks",
          [](const models::HookedModel& model) { return model.hooks().active_names(); },
          "Names of the hook points that currently have a hook attached.")
      .def(
          "to",
          [](models::HookedModel& model, std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
            model.to(device, dtype);
          },
          py::arg("device") = py::none(), py::arg("dtype") = py::none())
      .def_property_readonly("device", &models::HookedModel::device)
      .def_property_readonly("dtype", &models::HookedModel::dtype);

  py::class_<models::HookedWhisper, models::HookedModel>(m, "HookedWhisper", "Whisper with hook points.")
      .def(py::init([](const std::string& path, std::optional<at::Device> device,
                       std::optional<at::ScalarType> dtype) {
             py::gil_scoped_release release;
             return models::HookedWhisper::from_pretrained(path, load_options(device, dtype));
           }),
           py::arg("path"), py::arg("device") = py::none(), py::arg("dtype") = py::none())
      .def(
          "encode",
          [](models::HookedWhisper& model, const at::Tensor& mel, std::optional<at::Tensor> lengths) {
            py::gil_scoped_release release;
            return model.encode(mel, optional_tensor(lengths));
          },
          py::arg("mel"), py::arg("mel_lengths") = py::none())
      .def(
          "decode",
          [](models::HookedWhisper& model, const at::Tensor& tokens, const at::Tensor& audio) {
            py::gil_scoped_release release;
            return model.decode(tokens, audio);
          },
          py::arg("tokens"), py::arg("audio"))
      .def(
          "generate_greedy",
          [](models::HookedWhisper& model, const at::Tensor& mel, std::vector<int64_t> prompt,
             int64_t max_new_tokens, bool suppress, std::optional<at::Tensor> lengths) {
            models::GreedyOptions options{std::move(prompt), max_new_tokens, suppress};
            py::gil_scoped_release release;
            return model.generate_greedy(mel, options, optional_tensor(lengths));
          },
          py::arg("mel"), py::arg("prompt") = std::vector<int64_t>{}, py::arg("max_new_tokens") = 0,
          py::arg("apply_suppress_tokens") = true, py::arg("mel_lengths") = py::none())
      .def(
          "unembed", [](const models::HookedWhisper& model, const at::Tensor& x) { return model.unembed(x); },
          py::arg("residual"))
      .def(
          "apply_final_norm",
          [](const models::HookedWhisper& model, const at::Tensor& x, const std::string& stack) {
            return stack == "encoder" ? model.encoder_final_norm().apply(x) : model.decoder_final_norm().apply(x);
          },
          py::arg("residual"), py::arg("stack") = "decoder",
          "The stack's final layer norm without its hook (for lenses and decompositions).");
}

}  // namespace speechlens::python
