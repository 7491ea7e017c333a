#include "speechlens/models/hooked_model.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <mutex>

#include "speechlens/audio/resample.h"
#include "speechlens/models/layers/norm.h"
#include "speechlens/util/error.h"
#include "speechlens/util/log.h"

namespace speechlens::models {

// ---------------------------------------------------------------------------------------------
// ModelInputs

namespace {

struct Field {
  const char* name;
  const at::Tensor* tensor;
};

std::vector<Field> fields(const ModelInputs& in) {
  return {{"features", &in.features},
          {"tokens", &in.tokens},
          {"feature_lengths", &in.feature_lengths},
          {"token_mask", &in.token_mask}};
}

bool is_integer(const at::Tensor& t) {
  return !at::isFloatingType(t.scalar_type()) && !at::isComplexType(t.scalar_type()) && t.scalar_type() != at::kBool;
}

}  // namespace

int64_t ModelInputs::batch_size() const {
  int64_t batch = -1;
  const char* first = nullptr;
  for (const auto& f : fields(*this)) {
    if (!f.tensor->defined()) continue;
    if (f.tensor->dim() == 0) throw InvalidInput(fmt::format("model inputs: '{}' must have a batch dimension", f.name));
    const int64_t b = f.tensor->size(0);
    if (batch < 0) {
      batch = b;
      first = f.name;
    } else if (b != batch) {
      throw InvalidInput(fmt::format("model inputs disagree on the batch size: '{}' has {} rows, '{}' has {}", first,
                                     batch, f.name, b));
    }
  }
  if (batch < 0) throw InvalidInput("model inputs are empty: give features or tokens");
  return batch;
}

ModelInputs ModelInputs::repeat(int64_t times) const {
  if (times < 1) throw InvalidInput(fmt::format("inputs can be repeated 1 or more times, not {}", times));
  auto rep = [times](const at::Tensor& t) -> at::Tensor {
    if (!t.defined() || times == 1) return t;
    std::vector<int64_t> reps(t.dim(), 1);
    reps[0] = times;
    return t.repeat(reps);
  };
  return {rep(features), rep(tokens), rep(feature_lengths), rep(token_mask)};
}

ModelInputs ModelInputs::select(const std::vector<int64_t>& rows) const {
  const int64_t batch = batch_size();
  for (int64_t r : rows) {
    if (r < 0 || r >= batch) throw InvalidInput(fmt::format("row {} is out of range for a batch of {}", r, batch));
  }
  auto index = at::tensor(rows, at::kLong);
  auto pick = [&](const at::Tensor& t) -> at::Tensor {
    return t.defined() ? t.index_select(0, index.to(t.device())) : t;
  };
  return {pick(features), pick(tokens), pick(feature_lengths), pick(token_mask)};
}

void ModelInputs::check_compatible(const ModelInputs& other, const std::string& what) const {
  const auto mine = fields(*this);
  const auto theirs = fields(other);
  for (size_t i = 0; i < mine.size(); ++i) {
    const at::Tensor& a = *mine[i].tensor;
    const at::Tensor& b = *theirs[i].tensor;
    if (a.defined() != b.defined()) {
      throw InvalidInput(fmt::format("{} differ: '{}' is given for one and not the other", what, mine[i].name));
    }
    if (!a.defined()) continue;
    if (!a.sizes().equals(b.sizes())) {
      throw InvalidInput(fmt::format("{} differ in the shape of '{}': {} vs {}; pad them to one shape "
                                     "(sl.pad_pair) so that slices can be swapped",
                                     what, mine[i].name, c10::str(a.sizes()), c10::str(b.sizes())));
    }
    const bool structural = i >= 2;  // lengths and masks decide which positions are real
    if (structural && !at::equal(a.to(at::kCPU, at::kLong), b.to(at::kCPU, at::kLong))) {
      throw InvalidInput(fmt::format(
          "{} differ in '{}': their valid positions are not the same, so a patched position would be real "
          "in one run and padding in the other. Pad both to one length (sl.pad_pair) or pass the same lengths",
          what, mine[i].name));
    }
  }
}

void ModelInputs::validate() const {
  if (features.defined()) {
    if (!at::isFloatingType(features.scalar_type())) {
      throw InvalidInput(fmt::format(
          "features must be floating point, got {} (integer PCM must be scaled to [-1, 1] first: divide int16 "
          "audio by 32768)",
          c10::toString(features.scalar_type())));
    }
    if (features.numel() > 0 && !at::isfinite(features).all().item<bool>()) {
      throw InvalidInput("features contain NaN or infinite values; check the audio (sl.load_audio refuses such files)");
    }
  }
  if (tokens.defined() && !is_integer(tokens)) {
    throw InvalidInput(fmt::format("tokens must be integer ids, got {}", c10::toString(tokens.scalar_type())));
  }
  if (feature_lengths.defined()) {
    if (!is_integer(feature_lengths) || feature_lengths.dim() != 1) {
      throw InvalidInput(fmt::format("feature_lengths must be [batch] integers, got {} {}",
                                     c10::toString(feature_lengths.scalar_type()), c10::str(feature_lengths.sizes())));
    }
    if (feature_lengths.numel() > 0) {
      const int64_t low = feature_lengths.min().item<int64_t>();
      const int64_t high = feature_lengths.max().item<int64_t>();
      const int64_t limit = features.defined() && features.dim() >= 2 ? features.size(-1) : high;
      if (low < 1 || high > limit) {
        throw InvalidInput(fmt::format("feature_lengths must lie in [1, {}] (the features' time axis); got {} to {}",
                                       limit, low, high));
      }
    }
  }
  if (token_mask.defined()) {
    if (!tokens.defined() || !token_mask.sizes().equals(tokens.sizes())) {
      throw InvalidInput(fmt::format("token_mask must have the shape of tokens {}, got {}",
                                     tokens.defined() ? c10::str(tokens.sizes()) : std::string("(no tokens)"),
                                     c10::str(token_mask.sizes())));
    }
  }
  batch_size();
}

// ---------------------------------------------------------------------------------------------
// StackInfo

std::string StackInfo::block_hook(int64_t layer, const std::string& relative) const {
  return fmt::format("{}.blocks.{}.{}", prefix, layer, relative);
}

// ---------------------------------------------------------------------------------------------
// HookedModel

namespace {
// The shared lock of a call, unless the thread is already inside a call of this model.
std::shared_lock<std::shared_mutex> call_lock(std::shared_mutex& mutex, const hooks::HookRegistry& registry) {
  std::shared_lock<std::shared_mutex> lock(mutex, std::defer_lock);
  if (!hooks::RunContext::current(&registry)) lock.lock();
  return lock;
}
}  // namespace

HookedModel::Call::Call(HookedModel& model, const RunOptions& options, const ModelInputs& inputs)
    : lock_(call_lock(model.weights_mutex_, model.registry_)),
      context_((inputs.validate(), model.registry_)),
      guard_(context_),
      wanted_stop_(options.stop_at.has_value()) {
  for (const auto& hook : options.hooks) context_.add_hook(hook.selector, hook.fn, hook.direction);
  if (options.stop_at) context_.set_stop(*options.stop_at);
  if (options.start_at) context_.set_start(*options.start_at, options.start_value);
  else if (options.start_value.defined()) throw InvalidInput("start_value is given without start_at");
}

at::Tensor HookedModel::Call::result(at::Tensor output) const {
  if (wanted_stop_) {
    if (!context_.stopped()) {
      throw InvalidInput("the forward never reached the stop_at hook (is it after the point where this call's "
                         "inputs end, or before its start_at?)");
    }
    return context_.stop_value();
  }
  return output;
}

at::Tensor HookedModel::run(const ModelInputs& inputs, const RunOptions& options) {
  Call call(*this, options, inputs);
  at::Tensor out = run_impl(inputs, options, call.context());
  return call.result(std::move(out));
}

std::pair<at::Tensor, std::shared_ptr<hooks::ActivationCache>> HookedModel::run_with_cache(
    const ModelInputs& inputs, const hooks::HookSelector& names, hooks::CacheOptions cache_options,
    const RunOptions& options) {
  auto cache = std::make_shared<hooks::ActivationCache>(std::move(cache_options));
  RunOptions with_cache = options;
  with_cache.add_hook(names, [cache](const at::Tensor& act, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
    cache->record(ctx.name(), act, &ctx);
    return std::nullopt;
  });
  auto out = run(inputs, with_cache);
  return {out, cache};
}

std::vector<std::vector<int64_t>> HookedModel::generate(const ModelInputs&, const GenerateOptions&,
                                                        const RunOptions&) {
  throw InvalidInput(fmt::format("{} models do not generate text token by token{}", family(),
                                 stacks().size() == 1 ? " (CTC models: use transcribe)" : ""));
}

std::vector<std::string> HookedModel::transcribe(const std::vector<at::Tensor>&, std::optional<int64_t>) {
  throw InvalidInput(fmt::format("{} models have no transcribe()", family()));
}

StackInfo HookedModel::stack(hooks::Stack which) const {
  std::string known;
  for (const auto& s : stacks()) {
    if (s.stack == which) return s;
    known += (known.empty() ? "" : ", ") + std::string(hooks::to_string(s.stack));
  }
  throw InvalidInput(fmt::format("this {} model has no '{}' stack (its stacks: {})", family(),
                                 hooks::to_string(which), known));
}

at::Tensor HookedModel::final_norm(hooks::Stack which, const at::Tensor& residual) const {
  stack(which);  // throws for an unknown stack
  const Norm* norm = final_norm_layer(which);
  return norm ? norm->apply(residual) : residual;
}

void HookedModel::to(std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
  if (dtype && !at::isFloatingType(*dtype)) {
    throw InvalidInput(fmt::format("a model's weights can be converted to a floating type (float32, float16, "
                                   "bfloat16, float64), not {}",
                                   c10::toString(*dtype)));
  }
  if (hooks::RunContext::current(&registry_)) {
    throw InvalidInput("model.to() cannot run inside one of the model's own calls (a hook)");
  }
  std::unique_lock<std::shared_mutex> lock(weights_mutex_);
  visit([&](at::Tensor& t) {
    const bool floating = at::isFloatingType(t.scalar_type());
    t = t.to(device.value_or(t.device()), floating ? dtype.value_or(t.scalar_type()) : t.scalar_type());
  });
  settle_placement();
}

at::Tensor HookedModel::enter_graph(at::Tensor input) const {
  const auto* ctx = hooks::RunContext::current(&registry_);
  const bool backward = registry_.has_backward_hooks() || (ctx && ctx->has_backward_hooks());
  if (backward && c10::GradMode::is_enabled() && !input.requires_grad() && at::isFloatingType(input.scalar_type())) {
    return input.detach().requires_grad_(true);
  }
  return input;
}

void HookedModel::settle_placement() {
  bool found = false;
  visit([&](at::Tensor& t) {
    if (!found && at::isFloatingType(t.scalar_type())) {
      device_ = t.device();
      dtype_ = t.scalar_type();
      found = true;
    }
  });
}

std::vector<at::Tensor> HookedModel::to_model_rate(const std::vector<at::Tensor>& waves,
                                                   std::optional<int64_t> rate) const {
  if (waves.empty()) throw InvalidInput("no clips given");
  const int64_t target = sampling_rate();
  if (!rate) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      log::warn(fmt::format("no sampling_rate given: assuming the audio is at {} Hz, the model's rate; pass "
                            "sampling_rate= to have other rates resampled",
                            target));
    });
  }
  std::vector<at::Tensor> out;
  out.reserve(waves.size());
  for (size_t i = 0; i < waves.size(); ++i) {
    const at::Tensor& w = waves[i];
    if (!w.defined() || w.dim() != 1 || w.numel() == 0) {
      throw InvalidInput(fmt::format("clip {} must be a non-empty mono waveform [samples], got {}", i,
                                     w.defined() ? c10::str(w.sizes()) : std::string("nothing")));
    }
    if (!at::isFloatingType(w.scalar_type())) {
      throw InvalidInput(fmt::format("clip {} is {}: integer PCM must be scaled to [-1, 1] first (sl.load_audio and "
                                     "the Python wrappers do it)",
                                     i, c10::toString(w.scalar_type())));
    }
    if (!at::isfinite(w).all().item<bool>()) {
      throw InvalidInput(fmt::format("clip {} contains NaN or infinite samples", i));
    }
    out.push_back(rate && *rate != target ? audio::resample(w, *rate, target) : w);
  }
  return out;
}

}  // namespace speechlens::models
