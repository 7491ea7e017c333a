#include "speechlens/analysis/stats.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include "speechlens/util/error.h"

namespace speechlens::analysis {

NeuronStats::NeuronStats(int64_t classes, int64_t neurons) : classes_(classes), neurons_(neurons) {
  if (classes < 1 || neurons < 1) {
    throw InvalidInput(fmt::format("NeuronStats needs classes >= 1 and neurons >= 1, got {} and {}", classes, neurons));
  }
  count_ = at::zeros({classes}, at::kDouble);
  mean_ = at::zeros({classes, neurons}, at::kDouble);
  m2_ = at::zeros({classes, neurons}, at::kDouble);
}

namespace {

// Chan's merge of (n_a, mean_a, m2_a) with (n_b, mean_b, m2_b), per class row.
void chan_merge(at::Tensor& count, at::Tensor& mean, at::Tensor& m2, const at::Tensor& count_b,
                const at::Tensor& mean_b, const at::Tensor& m2_b) {
  at::Tensor total = count + count_b;
  at::Tensor safe = total.clamp_min(1).unsqueeze(1);
  at::Tensor delta = mean_b - mean;
  at::Tensor weight_b = count_b.unsqueeze(1) / safe;
  mean = mean + delta * weight_b;
  m2 = m2 + m2_b + delta.square() * (count * count_b).unsqueeze(1) / safe;
  count = total;
}

}  // namespace

void NeuronStats::update(const at::Tensor& activations, const at::Tensor& labels_in, const at::Tensor& mask) {
  if (activations.size(-1) != neurons_) {
    throw InvalidInput(fmt::format("activations have {} neurons but the accumulator has {}", activations.size(-1),
                                   neurons_));
  }
  at::Tensor x, labels, keep;
  if (activations.dim() == 2) {
    if (labels_in.dim() != 1 || labels_in.size(0) != activations.size(0)) {
      throw InvalidInput(fmt::format("[N, D] activations need labels [N], got {}", c10::str(labels_in.sizes())));
    }
    x = activations;
    labels = labels_in;
    if (mask.defined()) keep = mask.reshape({-1});
  } else if (activations.dim() == 3) {
    const int64_t b = activations.size(0), t = activations.size(1);
    if (labels_in.dim() == 1 && labels_in.size(0) == b) {
      labels = labels_in.unsqueeze(1).expand({b, t});
    } else if (labels_in.dim() == 2 && labels_in.size(0) == b && labels_in.size(1) == t) {
      labels = labels_in;
    } else {
      throw InvalidInput(fmt::format("[B, T, D] = {} activations need labels [B] or [B, T], got {}",
                                     c10::str(activations.sizes()), c10::str(labels_in.sizes())));
    }
    if (mask.defined()) {
      if (mask.dim() != 2 || mask.size(0) != b || mask.size(1) != t) {
        throw InvalidInput(fmt::format("frame mask must be [B, T] = [{}, {}], got {}", b, t, c10::str(mask.sizes())));
      }
      keep = mask.reshape({-1});
    }
    x = activations.reshape({-1, neurons_});
    labels = labels.reshape({-1});
  } else {
    throw InvalidInput(fmt::format("activations must be [N, D] or [B, T, D], got {}", c10::str(activations.sizes())));
  }
  x = x.detach().to(at::kCPU, at::kDouble);
  labels = labels.to(at::kCPU, at::kLong);
  at::Tensor valid = labels >= 0;
  if (keep.defined()) valid = valid & keep.to(at::kCPU, at::kBool);
  if ((labels >= classes_).any().item<bool>()) {
    throw InvalidInput(fmt::format("a label is >= the {} classes of this accumulator", classes_));
  }
  at::Tensor index = valid.nonzero().squeeze(1);
  x = x.index_select(0, index);
  labels = labels.index_select(0, index);
  if (x.size(0) == 0) return;
  // This batch's own per-class count, mean and M2, then one merge into the running state.
  at::Tensor onehot = at::one_hot(labels, classes_).to(at::kDouble);  // [N, C]
  at::Tensor count_b = onehot.sum(0);
  at::Tensor sum_b = onehot.t().mm(x);
  at::Tensor mean_b = sum_b / count_b.clamp_min(1).unsqueeze(1);
  at::Tensor centred = x - mean_b.index_select(0, labels);
  at::Tensor m2_b = onehot.t().mm(centred.square());
  chan_merge(count_, mean_, m2_, count_b, mean_b, m2_b);
}

void NeuronStats::merge(const NeuronStats& other) {
  if (other.classes_ != classes_ || other.neurons_ != neurons_) {
    throw InvalidInput("only accumulators with the same classes and neurons merge");
  }
  chan_merge(count_, mean_, m2_, other.count_, other.mean_, other.m2_);
}

at::Tensor NeuronStats::variance() const { return m2_ / count_.clamp_min(1).unsqueeze(1); }

std::pair<at::Tensor, at::Tensor> NeuronStats::rest(int64_t cls) const {
  at::Tensor others = at::ones({classes_}, at::kBool);
  others[cls] = false;
  at::Tensor index = others.nonzero().squeeze(1);
  at::Tensor count = at::zeros({1}, at::kDouble), mean = at::zeros({1, neurons_}, at::kDouble),
             m2 = at::zeros({1, neurons_}, at::kDouble);
  for (int64_t i = 0; i < index.size(0); ++i) {
    const int64_t c = index[i].item<int64_t>();
    chan_merge(count, mean, m2, count_.narrow(0, c, 1), mean_.narrow(0, c, 1), m2_.narrow(0, c, 1));
  }
  return {mean.squeeze(0), (m2 / count.clamp_min(1).unsqueeze(1)).squeeze(0)};
}

at::Tensor NeuronStats::selectivity() const {
  std::vector<at::Tensor> rows;
  for (int64_t c = 0; c < classes_; ++c) {
    at::Tensor in = mean_[c];
    at::Tensor out = rest(c).first;
    at::Tensor denom = in.abs() + out.abs();
    rows.push_back(at::where(denom > 0, (in - out) / denom.clamp_min(1e-300), at::zeros_like(in)));
  }
  return at::stack(rows);
}

at::Tensor NeuronStats::dprime() const {
  at::Tensor var = variance();
  std::vector<at::Tensor> rows;
  for (int64_t c = 0; c < classes_; ++c) {
    auto [out_mean, out_var] = rest(c);
    at::Tensor pooled = ((var[c] + out_var) / 2).sqrt();
    at::Tensor diff = mean_[c] - out_mean;
    rows.push_back(at::where(pooled > 0, diff / pooled.clamp_min(1e-300), at::zeros_like(diff)));
  }
  return at::stack(rows);
}

void accumulate_neuron_stats(models::HookedModel& model, const models::ModelInputs& inputs,
                             const std::string& hook_name, const at::Tensor& labels, NeuronStats& stats) {
  c10::NoGradGuard no_grad;
  int64_t fired = 0;
  models::RunOptions options;
  options.add_hook(hooks::HookSelector::exact(hook_name),
                   [&](const at::Tensor& act, hooks::HookContext& ctx) -> std::optional<at::Tensor> {
                     ++fired;
                     at::Tensor mask = act.dim() == 3 ? ctx.position_mask(act.size(1)) : at::Tensor();
                     stats.update(act, labels, mask);
                     return std::nullopt;
                   });
  // Nothing after the hook is needed.
  options.stop_at = hook_name;
  model.run(inputs, options);
  if (fired == 0) throw InvalidInput(fmt::format("hook '{}' did not fire in the forward", hook_name));
}

namespace {

at::Tensor centred(const at::Tensor& x) {
  if (x.dim() != 2) throw InvalidInput(fmt::format("CKA takes [N, D] representations, got {}", c10::str(x.sizes())));
  at::Tensor d = x.detach().to(at::kDouble);
  return d - d.mean(0, true);
}

// ||X^T Y||_F^2 computed through whichever side is smaller (N x N Gram or D x D cross).
double hsic(const at::Tensor& x, const at::Tensor& y) { return x.t().mm(y).square().sum().item<double>(); }

}  // namespace

double linear_cka(const at::Tensor& x, const at::Tensor& y) {
  if (x.dim() != 2 || y.dim() != 2 || x.size(0) != y.size(0)) {
    throw InvalidInput(fmt::format("linear_cka needs [N, D1] and [N, D2] with the same N, got {} and {}",
                                   c10::str(x.sizes()), c10::str(y.sizes())));
  }
  at::Tensor xc = centred(x), yc = centred(y.to(x.device()));
  const double denom = std::sqrt(hsic(xc, xc) * hsic(yc, yc));
  return denom > 0 ? hsic(xc, yc) / denom : 0.0;
}

at::Tensor cka_matrix(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  at::Tensor out = at::empty({static_cast<int64_t>(a.size()), static_cast<int64_t>(b.size())}, at::kDouble);
  std::vector<at::Tensor> ac, bc;
  std::vector<double> an, bn;
  for (const auto& x : a) {
    ac.push_back(centred(x));
    an.push_back(std::sqrt(hsic(ac.back(), ac.back())));
  }
  for (const auto& y : b) {
    bc.push_back(centred(y));
    bn.push_back(std::sqrt(hsic(bc.back(), bc.back())));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      if (ac[i].size(0) != bc[j].size(0)) {
        throw InvalidInput(fmt::format("CKA pairs need the same examples: {} vs {} rows", ac[i].size(0), bc[j].size(0)));
      }
      const double denom = an[i] * bn[j];
      out[i][j] = denom > 0 ? hsic(ac[i], bc[j].to(ac[i].device())) / denom : 0.0;
    }
  }
  return out;
}

}  // namespace speechlens::analysis
