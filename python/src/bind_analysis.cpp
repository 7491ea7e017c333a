// Bindings for the analysis toolkit; the speechlens.patching / lens / probes / stats modules
// wrap these with Python conveniences (tqdm progress, input packing, result objects).
#include <fmt/format.h>

#include "bindings.h"
#include "speechlens/analysis/decompose.h"
#include "speechlens/analysis/lens.h"
#include "speechlens/analysis/patching.h"
#include "speechlens/analysis/probes.h"
#include "speechlens/analysis/stats.h"
#include "speechlens/util/error.h"

namespace speechlens::python {

namespace {

analysis::Metric python_metric(py::function fn) {
  auto callable = shared_callable(std::move(fn));
  return [callable](const at::Tensor& logits) -> at::Tensor {
    py::gil_scoped_acquire gil;
    py::object out = (*callable)(logits);
    if (!THPVariable_Check(out.ptr())) {
      throw InvalidInput(fmt::format("the metric returned {}; it must return a torch.Tensor with one value per batch item",
                                     std::string(py::str(py::type::of(out)))));
    }
    return THPVariable_Unpack(out.ptr());
  };
}

analysis::PatchingOptions patching_options(const std::string& sweep, int64_t window,
                                           std::pair<int64_t, int64_t> positions, bool reverse, bool normalize,
                                           int64_t max_batch, std::optional<py::function> progress) {
  analysis::PatchingOptions options;
  options.axis = analysis::sweep_axis_from_name(sweep);
  options.window = window;
  options.position_begin = positions.first;
  options.position_end = positions.second;
  options.reverse = reverse;
  options.normalize = normalize;
  options.max_batch = max_batch;
  if (progress) {
    auto callable = shared_callable(std::move(*progress));
    options.progress = [callable](int64_t done, int64_t total) {
      py::gil_scoped_acquire gil;
      (*callable)(done, total);
    };
  }
  return options;
}

template <typename Fn>
void def_patching(py::module_& m, const char* name, Fn fn, const char* doc) {
  m.def(
      name,
      [fn](models::HookedModel& model, const py::object& clean_in, const py::object& corrupted_in,
           const py::object& hooks, py::function metric, const std::string& sweep, int64_t window,
           std::pair<int64_t, int64_t> positions, bool reverse, bool normalize, int64_t max_batch,
           std::optional<py::function> progress) {
        auto selector = to_selector(hooks);
        const auto clean = to_inputs(clean_in);
        const auto corrupted = to_inputs(corrupted_in);
        auto options = patching_options(sweep, window, positions, reverse, normalize, max_batch, std::move(progress));
        auto cpp_metric = python_metric(std::move(metric));
        py::gil_scoped_release release;
        return fn(model, clean, corrupted, selector, cpp_metric, options);
      },
      py::arg("model"), py::arg("clean"), py::arg("corrupted"), py::arg("hooks"), py::arg("metric"),
      py::arg("sweep") = "position", py::arg("window") = 1,
      py::arg("positions") = std::pair<int64_t, int64_t>{0, -1}, py::arg("reverse") = false, py::arg("normalize") = false,
      py::arg("max_batch") = 64, py::arg("progress") = py::none(), doc);
}

}  // namespace

void bind_analysis(py::module_& root) {
  auto m = root.def_submodule("analysis", "Patching, lenses, probes, neuron statistics, CKA");

  // The inputs type lives in speechlens._C.models; analysis code takes it (or a dict) too.
  m.attr("ModelInputs") = root.attr("models").attr("ModelInputs");

  py::class_<analysis::PatchingResult>(m, "PatchingResult")
      .def_readonly("values", &analysis::PatchingResult::values)
      .def_readonly("hook_names", &analysis::PatchingResult::hook_names)
      .def_readonly("axis_names", &analysis::PatchingResult::axis_names)
      .def_readonly("slot_labels", &analysis::PatchingResult::slot_labels)
      .def_readonly("slot_ranges", &analysis::PatchingResult::slot_ranges)
      .def_readonly("clean_metric", &analysis::PatchingResult::clean_metric)
      .def_readonly("corrupted_metric", &analysis::PatchingResult::corrupted_metric)
      .def_readonly("normalized", &analysis::PatchingResult::normalized)
      .def_readonly("reverse", &analysis::PatchingResult::reverse)
      .def_property_readonly("sweep", [](const analysis::PatchingResult& r) { return analysis::to_string(r.axis); })
      .def_readonly("forwards", &analysis::PatchingResult::forwards);

  def_patching(m, "activation_patching", &analysis::activation_patching,
               "Batched activation-patching sweep; see speechlens.patching.");
  def_patching(m, "attribution_patching", &analysis::attribution_patching,
               "Gradient (attribution) patching over the same sweep shapes.");

  py::class_<analysis::LogitLensResult>(m, "LogitLensResult")
      .def_readonly("logits", &analysis::LogitLensResult::logits)
      .def_readonly("hook_names", &analysis::LogitLensResult::hook_names)
      .def_readonly("layers", &analysis::LogitLensResult::layers)
      .def_property_readonly("stack", [](const analysis::LogitLensResult& r) { return hooks::to_string(r.stack); });
  m.def(
      "logit_lens",
      [](models::HookedModel& model, const py::object& inputs, std::optional<std::string> stack,
         std::vector<int64_t> layers, bool include_input) {
        analysis::LensOptions options;
        if (stack) options.stack = stack_from(model, *stack);
        options.layers = std::move(layers);
        options.include_input = include_input;
        auto in = to_inputs(inputs);
        py::gil_scoped_release release;
        return analysis::logit_lens(model, in, options);
      },
      py::arg("model"), py::arg("inputs"), py::arg("stack") = py::none(), py::arg("layers") = std::vector<int64_t>{},
      py::arg("include_input") = true,
      "Each layer's residual stream read out: through the stack's final norm and head, or (a stack without a "
      "head) by decoding from it.");
  py::class_<analysis::LayerDecodeResult>(m, "LayerDecodeResult")
      .def_readonly("layers", &analysis::LayerDecodeResult::layers)
      .def_property_readonly("logits", [](const analysis::LayerDecodeResult& r) { return tensor_or_none(r.logits); })
      .def_readonly("tokens", &analysis::LayerDecodeResult::tokens)
      .def_property_readonly("stack", [](const analysis::LayerDecodeResult& r) { return hooks::to_string(r.stack); });
  m.def(
      "decode_from_layers",
      [](models::HookedModel& model, const py::object& inputs, const std::string& stack, std::vector<int64_t> layers,
         bool teacher_forced, bool generate, std::optional<at::Tensor> prompt, int64_t max_new_tokens,
         bool apply_suppress_tokens, std::optional<at::Tensor> teacher_tokens) {
        analysis::LayerDecodeOptions options;
        options.teacher_tokens = optional_tensor(teacher_tokens);
        options.stack = stack_from(model, stack);
        options.layers = std::move(layers);
        options.teacher_forced = teacher_forced;
        options.generate = generate;
        options.generation.prompt = optional_tensor(prompt);
        options.generation.max_new_tokens = max_new_tokens;
        options.generation.apply_suppress_tokens = apply_suppress_tokens;
        auto in = to_inputs(inputs);
        py::gil_scoped_release release;
        return analysis::decode_from_layers(model, in, options);
      },
      py::arg("model"), py::arg("inputs"), py::arg("stack") = "encoder", py::arg("layers") = std::vector<int64_t>{},
      py::arg("teacher_forced") = true, py::arg("generate") = true, py::arg("prompt") = py::none(),
      py::arg("max_new_tokens") = 0, py::arg("apply_suppress_tokens") = true, py::arg("teacher_tokens") = py::none(),
      "The model's outputs with layer L of `stack` standing in for its last layer (the encoder lens).");
  m.def(
      "apply_ln_to_stack",
      [](const models::HookedModel& model, const std::string& stack, const at::Tensor& components,
         const at::Tensor& scale) { return analysis::apply_ln_to_stack(model, stack_from(model, stack), components, scale); },
      py::arg("model"), py::arg("stack"), py::arg("components"), py::arg("scale"));
  m.def(
      "logit_attrs",
      [](const models::HookedModel& model, const std::string& stack, const at::Tensor& normed,
         const at::Tensor& tokens, std::optional<at::Tensor> incorrect) {
        return analysis::logit_attrs(model, stack_from(model, stack), normed, tokens, optional_tensor(incorrect));
      },
      py::arg("model"), py::arg("stack"), py::arg("normed_components"), py::arg("tokens"),
      py::arg("incorrect") = py::none());
  m.def(
      "bias_logit_attrs",
      [](const models::HookedModel& model, const std::string& stack, const at::Tensor& tokens,
         std::optional<at::Tensor> incorrect) {
        return analysis::bias_logit_attrs(model, stack_from(model, stack), tokens, optional_tensor(incorrect));
      },
      py::arg("model"), py::arg("stack"), py::arg("tokens"), py::arg("incorrect") = py::none());

  py::class_<analysis::ProbeResult>(m, "ProbeResult")
      .def_readonly("metric", &analysis::ProbeResult::metric)
      .def_readonly("train_score", &analysis::ProbeResult::train_score)
      .def_readonly("test_score", &analysis::ProbeResult::test_score)
      .def_readonly("control_score", &analysis::ProbeResult::control_score)
      .def_readonly("chance", &analysis::ProbeResult::chance)
      .def_readonly("n_train", &analysis::ProbeResult::n_train)
      .def_readonly("n_test", &analysis::ProbeResult::n_test)
      .def_readonly("iterations", &analysis::ProbeResult::iterations)
      .def_readonly("weight", &analysis::ProbeResult::weight)
      .def_readonly("bias", &analysis::ProbeResult::bias)
      .def("__repr__", [](const analysis::ProbeResult& r) {
        return fmt::format("<ProbeResult {} train={:.3f} test={:.3f} control={:.3f} n={}+{}>", r.metric, r.train_score,
                           r.test_score, r.control_score, r.n_train, r.n_test);
      });
  auto probe_options = [](double l2, double test_fraction, uint64_t seed, int64_t max_iter, bool control) {
    analysis::ProbeOptions o;
    o.l2 = l2;
    o.test_fraction = test_fraction;
    o.seed = seed;
    o.max_iter = max_iter;
    o.control = control;
    return o;
  };
  m.def(
      "train_probe",
      [probe_options](const at::Tensor& x, const at::Tensor& y, const std::string& kind, double l2,
                      double test_fraction, uint64_t seed, int64_t max_iter, bool control) {
        auto options = probe_options(l2, test_fraction, seed, max_iter, control);
        auto k = analysis::probe_kind_from_name(kind);
        py::gil_scoped_release release;
        return analysis::train_probe(x, y, k, options);
      },
      py::arg("x"), py::arg("y"), py::arg("kind") = "logistic", py::arg("l2") = 1e-2, py::arg("test_fraction") = 0.25,
      py::arg("seed") = 0, py::arg("max_iter") = 500, py::arg("control") = true);
  m.def("pool_frames",
        [](const at::Tensor& acts, std::optional<at::Tensor> mask) {
          return analysis::pool_frames(acts, optional_tensor(mask));
        },
        py::arg("activations"), py::arg("mask") = py::none());
  m.def("flatten_frames",
        [](const at::Tensor& acts, const at::Tensor& labels, std::optional<at::Tensor> mask) {
          return analysis::flatten_frames(acts, labels, optional_tensor(mask));
        },
        py::arg("activations"), py::arg("labels"), py::arg("mask") = py::none());

  py::class_<analysis::NeuronStats>(m, "NeuronStats", "Streaming per-class, per-neuron mean and variance.")
      .def(py::init<int64_t, int64_t>(), py::arg("classes"), py::arg("neurons"))
      .def(
          "update",
          [](analysis::NeuronStats& s, const at::Tensor& acts, const at::Tensor& labels, std::optional<at::Tensor> mask) {
            s.update(acts, labels, optional_tensor(mask));
          },
          py::arg("activations"), py::arg("labels"), py::arg("mask") = py::none())
      .def("merge", &analysis::NeuronStats::merge, py::arg("other"))
      .def_property_readonly("classes", &analysis::NeuronStats::classes)
      .def_property_readonly("neurons", &analysis::NeuronStats::neurons)
      .def_property_readonly("count", &analysis::NeuronStats::count)
      .def_property_readonly("mean", &analysis::NeuronStats::mean)
      .def_property_readonly("variance", &analysis::NeuronStats::variance)
      .def("selectivity", &analysis::NeuronStats::selectivity)
      .def("dprime", &analysis::NeuronStats::dprime);
  m.def(
      "accumulate_neuron_stats",
      [](models::HookedModel& model, const py::object& inputs_in, const std::string& hook_name,
         const at::Tensor& labels, analysis::NeuronStats& stats) {
        auto inputs = to_inputs(inputs_in);
        py::gil_scoped_release release;
        analysis::accumulate_neuron_stats(model, inputs, hook_name, labels, stats);
      },
      py::arg("model"), py::arg("inputs"), py::arg("hook_name"), py::arg("labels"), py::arg("stats"));
  m.def("linear_cka", &analysis::linear_cka, py::arg("x"), py::arg("y"));
  m.def("cka_matrix", &analysis::cka_matrix, py::arg("a"), py::arg("b"));
}

}  // namespace speechlens::python
