// speechlens._C.models: ModelInputs, the HookedModel contract every family implements, and the
// family-agnostic loader. Family-specific methods live in bind_models_<family>.cpp.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pybind11/stl/filesystem.h>

#include "bindings.h"
#include "speechlens/hooks/activation_cache.h"
#include "speechlens/models/layers/norm.h"
#include "speechlens/models/registry.h"
#include "speechlens/util/error.h"

namespace speechlens::python {

namespace {

using GilRelease = py::call_guard<py::gil_scoped_release>;

void add_hooks(models::RunOptions& options, const py::object& specs, hooks::Direction direction) {
  if (specs.is_none()) return;
  for (const auto& item : specs) {
    auto spec = py::reinterpret_borrow<py::object>(item);
    if (!py::isinstance<py::tuple>(spec) && !py::isinstance<py::list>(spec)) {
      throw InvalidInput("hooks are given as (name_or_filter, fn) pairs");
    }
    auto pair = spec.cast<py::sequence>();
    if (pair.size() != 2) throw InvalidInput("hooks are given as (name_or_filter, fn) pairs");
    options.add_hook(to_selector(pair[0]), python_hook(pair[1]), direction);
  }
}

at::Tensor field(const py::dict& d, const char* key) {
  if (!d.contains(key) || d[key].is_none()) return {};
  return d[key].cast<at::Tensor>();
}

py::dict stack_dict(const models::StackInfo& s) {
  py::dict d;
  d["stack"] = hooks::to_string(s.stack);
  d["prefix"] = s.prefix;
  d["n_layers"] = s.n_layers;
  d["d_model"] = s.d_model;
  d["causal"] = s.causal;
  d["has_head"] = s.has_head;
  d["unit"] = s.unit;
  d["final_norm"] = s.final_norm;
  return d;
}

}  // namespace

hooks::Stack stack_from(const models::HookedModel& model, const std::string& stack) {
  for (const auto& s : model.stacks()) {
    if (s.prefix == stack || hooks::to_string(s.stack) == stack) return s.stack;
  }
  std::string known;
  for (const auto& s : model.stacks()) known += (known.empty() ? "" : ", ") + std::string(hooks::to_string(s.stack));
  throw InvalidInput(fmt::format("this {} model has no stack '{}' (its stacks: {})", model.family(), stack, known));
}

models::ModelInputs to_inputs(const py::handle& inputs) {
  if (py::isinstance<models::ModelInputs>(inputs)) return inputs.cast<models::ModelInputs>();
  if (py::isinstance<py::dict>(inputs)) {
    auto d = inputs.cast<py::dict>();
    for (const auto& item : d) {
      const auto key = item.first.cast<std::string>();
      if (key != "features" && key != "tokens" && key != "feature_lengths" && key != "token_mask") {
        throw InvalidInput(fmt::format("unknown model input '{}' (inputs are features, tokens, feature_lengths, "
                                       "token_mask)",
                                       key));
      }
    }
    return {field(d, "features"), field(d, "tokens"), field(d, "feature_lengths"), field(d, "token_mask")};
  }
  throw InvalidInput(fmt::format("model inputs are a ModelInputs or a dict of its fields, got {}",
                                 std::string(py::str(py::type::of(inputs)))));
}

models::RunOptions run_options(const py::object& fwd_hooks, const py::object& bwd_hooks,
                               std::optional<std::string> stop_at, std::optional<std::string> start_at,
                               std::optional<at::Tensor> start_value, std::optional<at::Tensor> encoder_output) {
  models::RunOptions options;
  add_hooks(options, fwd_hooks, hooks::Direction::forward);
  add_hooks(options, bwd_hooks, hooks::Direction::backward);
  options.stop_at = std::move(stop_at);
  options.start_at = std::move(start_at);
  options.start_value = optional_tensor(start_value);
  options.encoder_output = optional_tensor(encoder_output);
  return options;
}

void bind_models(py::module_& root) {
  auto m = root.def_submodule("models", "Hooked model implementations");

  py::class_<models::ModelInputs>(m, "ModelInputs",
                                  "One forward's inputs: features, tokens, feature_lengths, token_mask (each a "
                                  "tensor or None). A value: repeat / select / check_compatible make new ones.")
      .def(py::init([](std::optional<at::Tensor> features, std::optional<at::Tensor> tokens,
                       std::optional<at::Tensor> feature_lengths, std::optional<at::Tensor> token_mask) {
             return models::ModelInputs{optional_tensor(features), optional_tensor(tokens),
                                        optional_tensor(feature_lengths), optional_tensor(token_mask)};
           }),
           py::arg("features") = py::none(), py::arg("tokens") = py::none(), py::arg("feature_lengths") = py::none(),
           py::arg("token_mask") = py::none())
      .def_property(
          "features", [](const models::ModelInputs& i) { return tensor_or_none(i.features); },
          [](models::ModelInputs& i, std::optional<at::Tensor> t) { i.features = optional_tensor(t); })
      .def_property(
          "tokens", [](const models::ModelInputs& i) { return tensor_or_none(i.tokens); },
          [](models::ModelInputs& i, std::optional<at::Tensor> t) { i.tokens = optional_tensor(t); })
      .def_property(
          "feature_lengths", [](const models::ModelInputs& i) { return tensor_or_none(i.feature_lengths); },
          [](models::ModelInputs& i, std::optional<at::Tensor> t) { i.feature_lengths = optional_tensor(t); })
      .def_property(
          "token_mask", [](const models::ModelInputs& i) { return tensor_or_none(i.token_mask); },
          [](models::ModelInputs& i, std::optional<at::Tensor> t) { i.token_mask = optional_tensor(t); })
      .def("batch_size", &models::ModelInputs::batch_size)
      .def("repeat", &models::ModelInputs::repeat, py::arg("times"),
           "The inputs repeated along the batch (row = copy * batch + item).")
      .def("select", &models::ModelInputs::select, py::arg("rows"), "The given rows of every field.")
      .def("check_compatible", &models::ModelInputs::check_compatible, py::arg("other"),
           py::arg("what") = "the two inputs",
           "Raises ValueError naming the first field in which `other` cannot stand in for these inputs row for row.")
      .def("validate", &models::ModelInputs::validate)
      .def("to_dict",
           [](const models::ModelInputs& i) {
             py::dict d;
             d["features"] = tensor_or_none(i.features);
             d["tokens"] = tensor_or_none(i.tokens);
             d["feature_lengths"] = tensor_or_none(i.feature_lengths);
             d["token_mask"] = tensor_or_none(i.token_mask);
             return d;
           })
      .def("__repr__", [](const models::ModelInputs& i) {
        auto shape = [](const at::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : std::string("None"); };
        return fmt::format("ModelInputs(features={}, tokens={}, feature_lengths={}, token_mask={})",
                           shape(i.features), shape(i.tokens), shape(i.feature_lengths), shape(i.token_mask));
      });

  py::class_<models::HookedModel>(m, "HookedModel", "The contract every hooked model implements.")
      .def_property_readonly("family", &models::HookedModel::family)
      .def("config_json", [](const models::HookedModel& model) { return model.config_json().dump(); },
           "The configuration as a JSON string (TransformerLens-style keys).")
      .def_property_readonly("checkpoint_dir", &models::HookedModel::checkpoint_dir)
      .def("hook_names", &models::HookedModel::hook_names, "Every hook point name, in forward order.")
      .def(
          "run",
          [](models::HookedModel& model, const py::object& inputs, const py::object& fwd_hooks,
             const py::object& bwd_hooks, std::optional<std::string> stop_at, std::optional<std::string> start_at,
             std::optional<at::Tensor> start_value, std::optional<at::Tensor> encoder_output) {
            auto in = to_inputs(inputs);
            auto options = run_options(fwd_hooks, bwd_hooks, std::move(stop_at), std::move(start_at),
                                       std::move(start_value), std::move(encoder_output));
            py::gil_scoped_release release;
            return model.run(in, options);
          },
          py::arg("inputs"), py::arg("fwd_hooks") = py::none(), py::arg("bwd_hooks") = py::none(),
          py::arg("stop_at") = py::none(), py::arg("start_at") = py::none(), py::arg("start_value") = py::none(),
          py::arg("encoder_output") = py::none(),
          "One forward with hooks for this call only; returns the logits or the stop_at activation.")
      .def(
          "run_with_cache",
          [](models::HookedModel& model, const py::object& inputs, const py::object& names,
             std::shared_ptr<hooks::ActivationCache> store, const py::object& grad_names,
             std::shared_ptr<hooks::ActivationCache> grad_store, const py::object& fwd_hooks,
             const py::object& bwd_hooks, std::optional<std::string> stop_at, std::optional<std::string> start_at,
             std::optional<at::Tensor> start_value, std::optional<at::Tensor> encoder_output) {
            auto in = to_inputs(inputs);
            auto options = run_options(fwd_hooks, bwd_hooks, std::move(stop_at), std::move(start_at),
                                       std::move(start_value), std::move(encoder_output));
            auto record = [](std::shared_ptr<hooks::ActivationCache> cache) {
              return [cache](const at::Tensor& act, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
                cache->record(ctx.name(), act, &ctx);
                return std::nullopt;
              };
            };
            // The recorders run after this call's own hooks at the same point (a cache holds
            // what flows downstream).
            if (!names.is_none()) options.add_hook(to_selector(names), record(store));
            if (!grad_names.is_none() && grad_store) {
              options.add_hook(to_selector(grad_names), record(grad_store), hooks::Direction::backward);
            }
            py::gil_scoped_release release;
            return model.run(in, options);
          },
          py::arg("inputs"), py::arg("names"), py::arg("store"), py::arg("grad_names") = py::none(),
          py::arg("grad_store") = nullptr, py::arg("fwd_hooks") = py::none(), py::arg("bwd_hooks") = py::none(),
          py::arg("stop_at") = py::none(), py::arg("start_at") = py::none(), py::arg("start_value") = py::none(),
          py::arg("encoder_output") = py::none(),
          "One forward recording the selected activations (C++ recorders, no Python per activation) into `store` "
          "(and gradients into `grad_store` when the caller runs backward).")
      .def(
          "generate",
          [](models::HookedModel& model, const py::object& inputs, std::optional<at::Tensor> prompt,
             int64_t max_new_tokens, bool apply_suppress_tokens, std::optional<std::vector<int64_t>> suppress_tokens,
             std::optional<std::vector<int64_t>> begin_suppress_tokens,
             std::optional<std::vector<int64_t>> eos_token_ids, const py::object& fwd_hooks,
             std::optional<std::string> start_at, std::optional<at::Tensor> start_value,
             std::optional<at::Tensor> encoder_output) {
            auto in = to_inputs(inputs);
            models::GenerateOptions generate;
            generate.prompt = optional_tensor(prompt);
            generate.max_new_tokens = max_new_tokens;
            generate.apply_suppress_tokens = apply_suppress_tokens;
            generate.suppress_tokens = std::move(suppress_tokens);
            generate.begin_suppress_tokens = std::move(begin_suppress_tokens);
            generate.eos_token_ids = std::move(eos_token_ids);
            auto options = run_options(fwd_hooks, py::none(), std::nullopt, std::move(start_at),
                                       std::move(start_value), std::move(encoder_output));
            py::gil_scoped_release release;
            return model.generate(in, generate, options);
          },
          py::arg("inputs"), py::arg("prompt") = py::none(), py::arg("max_new_tokens") = 0,
          py::arg("apply_suppress_tokens") = true, py::arg("suppress_tokens") = py::none(),
          py::arg("begin_suppress_tokens") = py::none(), py::arg("eos_token_ids") = py::none(),
          py::arg("fwd_hooks") = py::none(), py::arg("start_at") = py::none(), py::arg("start_value") = py::none(),
          py::arg("encoder_output") = py::none(),
          "Greedy decoding with a KV cache; hooks fire at every step. Generated ids per item.")
      .def("transcribe", &models::HookedModel::transcribe, py::arg("waves"), py::arg("sampling_rate") = py::none(),
           GilRelease(), "Text per clip.")
      .def("prepare", &models::HookedModel::prepare, py::arg("waves"), py::arg("sampling_rate") = py::none(),
           GilRelease(), "Raw clips -> the model's padded inputs with valid lengths (differentiable).")
      .def_property_readonly("sampling_rate", &models::HookedModel::sampling_rate)
      .def("stacks",
           [](const models::HookedModel& model) {
             py::list out;
             for (const auto& s : model.stacks()) out.append(stack_dict(s));
             return out;
           })
      .def(
          "final_norm",
          [](const models::HookedModel& model, const std::string& stack, const at::Tensor& x) {
            return model.final_norm(stack_from(model, stack), x);
          },
          py::arg("stack"), py::arg("residual"), "The stack's final norm without its hooks.")
      .def(
          "final_norm_scale",
          [](const models::HookedModel& model, const std::string& stack, const at::Tensor& x) -> py::object {
            const auto* norm = model.final_norm_layer(stack_from(model, stack));
            return norm ? py::cast(norm->scale(x)) : py::none();
          },
          py::arg("stack"), py::arg("residual"), "What the stack's final norm divides by (its hook_scale), or None.")
      .def(
          "unembed",
          [](const models::HookedModel& model, const std::string& stack, const at::Tensor& x) {
            return model.unembed(stack_from(model, stack), x);
          },
          py::arg("stack"), py::arg("normed"), "The stack's head (LM / decoder / CTC) on a normed residual stream.")
      .def(
          "unembedding",
          [](const models::HookedModel& model, const std::string& stack) {
            return model.unembedding(stack_from(model, stack));
          },
          py::arg("stack"))
      // Hooks attached to the model (visible to every call until removed).
      .def(
          "add_hook",
          [](models::HookedModel& model, const py::object& selector, py::object fn, const std::string& dir,
             bool permanent) {
            return model.hooks().add(to_selector(selector), python_hook(std::move(fn)), direction_from(dir),
                                     permanent);
          },
          py::arg("selector"), py::arg("fn"), py::arg("dir") = "fwd", py::arg("permanent") = false,
          "Attaches a Python hook fn(tensor, hook) at every matching point; returns the hook ids.")
      .def(
          "add_cache_hook",
          [](models::HookedModel& model, const py::object& selector, std::shared_ptr<hooks::ActivationCache> cache,
             const std::string& dir, bool permanent) {
            hooks::HookFn record = [cache](const at::Tensor& activation,
                                           hooks::HookContext& ctx) -> std::optional<at::Tensor> {
              cache->record(ctx.name(), activation, &ctx);
              return std::nullopt;
            };
            return model.hooks().add(to_selector(selector), record, direction_from(dir), permanent);
          },
          py::arg("selector"), py::arg("cache"), py::arg("dir") = "fwd", py::arg("permanent") = false,
          "Attaches a C++ recorder into `cache` (no Python per activation); returns the hook ids.")
      .def(
          "resolve",
          [](models::HookedModel& model, const py::object& selector) {
            return model.hooks().resolve(to_selector(selector));
          },
          py::arg("selector"), "The hook names a selector matches (HookNameError with suggestions if none).")
      .def(
          "remove_hooks", [](models::HookedModel& model, const std::vector<hooks::HookId>& ids) { model.hooks().remove(ids); },
          py::arg("ids"))
      .def(
          "remove_hooks_where",
          [](models::HookedModel& model, const py::object& where, const std::string& dir, bool including_permanent) {
            std::optional<hooks::HookSelector> selector;
            if (!where.is_none()) selector = to_selector(where);
            std::optional<hooks::Direction> direction;
            if (dir != "both") direction = direction_from(dir);
            return model.hooks().remove_where(selector, direction, including_permanent);
          },
          py::arg("where") = py::none(), py::arg("dir") = "both", py::arg("including_permanent") = false,
          "Removes the hooks at the selected points (all when None), of one direction or 'both'; returns the count.")
      .def(
          "reset_hooks",
          [](models::HookedModel& model, bool including_permanent) { model.hooks().reset(including_permanent); },
          py::arg("including_permanent") = false)
      .def_property_readonly("hook_count", [](const models::HookedModel& model) { return model.hooks().hook_count(); })
      .def(
          "active_hooks", [](const models::HookedModel& model) { return model.hooks().active_names(); },
          "Names of the hook points that currently have a hook attached.")
      .def(
          "list_hooks",
          [](const models::HookedModel& model) {
            py::list out;
            for (const auto& h : model.hooks().list()) {
              out.append(py::make_tuple(h.id, h.point, hooks::to_string(h.direction), h.permanent));
            }
            return out;
          },
          "[(id, point, 'fwd' | 'bwd', permanent)] of every attached hook.")
      .def("to", &models::HookedModel::to, py::arg("device") = py::none(), py::arg("dtype") = py::none(), GilRelease())
      .def_property_readonly("device", &models::HookedModel::device)
      .def_property_readonly("dtype", &models::HookedModel::dtype);

  m.def(
      "load",
      [](const std::string& path, std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
        return models::load(std::filesystem::path(path), models::LoadOptions{dtype, device});
      },
      py::arg("path"), py::arg("device") = py::none(), py::arg("dtype") = py::none(), GilRelease(),
      "Loads an HF checkpoint folder with the family its config.json names.");
  m.def("families", &models::families, "The config.json model_types that load.");
}

}  // namespace speechlens::python
