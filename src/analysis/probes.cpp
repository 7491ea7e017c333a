#include "speechlens/analysis/probes.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "speechlens/util/error.h"

namespace speechlens::analysis {

namespace {

using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Matrix to_matrix(const at::Tensor& x) {
  at::Tensor c = x.detach().to(at::kCPU, at::kDouble).contiguous();
  return Eigen::Map<const RowMatrix>(c.data_ptr<double>(), c.size(0), c.size(1));
}

at::Tensor to_tensor(const Matrix& m) {
  at::Tensor out = at::empty({m.rows(), m.cols()}, at::kDouble);
  Eigen::Map<RowMatrix>(out.data_ptr<double>(), m.rows(), m.cols()) = m;
  return out;
}

// Deterministic on every platform (std::shuffle's algorithm is unspecified).
std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

Matrix rows(const Matrix& m, const std::vector<int64_t>& index) {
  Matrix out(static_cast<Eigen::Index>(index.size()), m.cols());
  for (size_t i = 0; i < index.size(); ++i) out.row(static_cast<Eigen::Index>(i)) = m.row(index[i]);
  return out;
}

// Feature standardisation fitted on the training split; the penalty then treats features alike.
struct Standardizer {
  Eigen::RowVectorXd mean, scale;
  explicit Standardizer(const Matrix& x) {
    mean = x.colwise().mean();
    scale = ((x.rowwise() - mean).array().square().colwise().mean()).sqrt().matrix();
    for (Eigen::Index j = 0; j < scale.size(); ++j) {
      if (!(scale[j] > 1e-12)) scale[j] = 1.0;
    }
  }
  Matrix apply(const Matrix& x) const { return (x.rowwise() - mean).array().rowwise() / scale.array(); }
};

struct Fit {
  Matrix weight;  // [K, D] in standardised space
  Vector bias;    // [K]
  int64_t iterations = 0;
};

Fit fit_ridge(const Matrix& x, const Vector& y, double l2) {
  const double y_mean = y.mean();
  const auto n = static_cast<double>(x.rows());
  // x is centred by the standardiser, so the bias is the target mean.
  Matrix gram = x.transpose() * x / n;
  gram.diagonal().array() += l2;
  Vector w = gram.ldlt().solve(x.transpose() * (y.array() - y_mean).matrix() / n);
  return {w.transpose(), Vector::Constant(1, y_mean), 0};
}

Matrix softmax_rows(const Matrix& logits) {
  Matrix p = logits;
  for (Eigen::Index i = 0; i < p.rows(); ++i) {
    const double top = p.row(i).maxCoeff();
    p.row(i) = (p.row(i).array() - top).exp();
    p.row(i) /= p.row(i).sum();
  }
  return p;
}

// Multinomial logistic regression by Nesterov-accelerated gradient descent with the step size
// 1/L from a bound on the loss's curvature: deterministic, no line search needed.
Fit fit_logistic(const Matrix& x, const std::vector<int64_t>& y, int64_t classes, const ProbeOptions& options) {
  const auto n = x.rows();
  const auto d = x.cols();
  Matrix onehot = Matrix::Zero(n, classes);
  for (Eigen::Index i = 0; i < n; ++i) onehot(i, y[i]) = 1.0;
  // The softmax cross-entropy Hessian is bounded by 1/2 * ([x 1]^T [x 1] / n); its top
  // eigenvalue comes from a few power iterations.
  Matrix xb(n, d + 1);
  xb << x, Vector::Ones(n);
  Matrix gram = xb.transpose() * xb / static_cast<double>(n);
  Vector v = Vector::Ones(d + 1).normalized();
  double top = 1.0;
  for (int it = 0; it < 50; ++it) {
    Vector next = gram * v;
    top = next.norm();
    if (top == 0) break;
    v = next / top;
  }
  const double step = 1.0 / (0.5 * top + options.l2);
  Matrix theta = Matrix::Zero(d + 1, classes), previous = theta, momentum = theta;
  double t = 1.0;
  Fit fit;
  for (int64_t it = 0; it < options.max_iter; ++it) {
    Matrix probs = softmax_rows(xb * momentum);
    Matrix grad = xb.transpose() * (probs - onehot) / static_cast<double>(n);
    grad.topRows(d) += options.l2 * momentum.topRows(d);
    fit.iterations = it + 1;
    if (grad.norm() < options.tolerance) {
      theta = momentum;
      break;
    }
    theta = momentum - step * grad;
    const double t_next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
    momentum = theta + ((t - 1.0) / t_next) * (theta - previous);
    previous = theta;
    t = t_next;
  }
  fit.weight = theta.topRows(d).transpose();
  fit.bias = theta.row(d).transpose();
  return fit;
}

double accuracy(const Matrix& x, const Fit& fit, const std::vector<int64_t>& y) {
  if (x.rows() == 0) return std::numeric_limits<double>::quiet_NaN();
  Matrix scores = (x * fit.weight.transpose()).rowwise() + fit.bias.transpose();
  int64_t correct = 0;
  for (Eigen::Index i = 0; i < scores.rows(); ++i) {
    Eigen::Index best;
    scores.row(i).maxCoeff(&best);
    correct += (best == y[i]);
  }
  return static_cast<double>(correct) / static_cast<double>(x.rows());
}

double r2(const Matrix& x, const Fit& fit, const Vector& y) {
  if (x.rows() == 0) return std::numeric_limits<double>::quiet_NaN();
  Vector predicted = (x * fit.weight.transpose()).col(0).array() + fit.bias[0];
  const double residual = (y - predicted).squaredNorm();
  const double total = (y.array() - y.mean()).matrix().squaredNorm();
  return total > 0 ? 1.0 - residual / total : std::numeric_limits<double>::quiet_NaN();
}

struct Scores {
  double train, test;
  Fit fit;
};

Scores fit_and_score(const Matrix& train_x, const Matrix& test_x, const std::vector<int64_t>& train_y_ids,
                     const std::vector<int64_t>& test_y_ids, const Vector& train_y, const Vector& test_y,
                     ProbeKind kind, int64_t classes, const ProbeOptions& options) {
  if (kind == ProbeKind::ridge) {
    Fit fit = fit_ridge(train_x, train_y, options.l2);
    return {r2(train_x, fit, train_y), r2(test_x, fit, test_y), fit};
  }
  Fit fit = fit_logistic(train_x, train_y_ids, classes, options);
  return {accuracy(train_x, fit, train_y_ids), accuracy(test_x, fit, test_y_ids), fit};
}

}  // namespace

ProbeKind probe_kind_from_name(const std::string& name) {
  if (name == "ridge" || name == "linear" || name == "regression") return ProbeKind::ridge;
  if (name == "logistic" || name == "classification" || name == "softmax") return ProbeKind::logistic;
  throw InvalidInput(fmt::format("unknown probe kind '{}'; use 'logistic' (classes) or 'ridge' (real targets)", name));
}

ProbeResult train_probe(const at::Tensor& x_in, const at::Tensor& y_in, ProbeKind kind, const ProbeOptions& options) {
  if (x_in.dim() != 2 || !at::isFloatingType(x_in.scalar_type())) {
    throw InvalidInput(fmt::format("probe features must be a floating [N, D] tensor, got {} {}",
                                   c10::toString(x_in.scalar_type()), c10::str(x_in.sizes())));
  }
  const int64_t n = x_in.size(0);
  if (y_in.dim() != 1 || y_in.size(0) != n) {
    throw InvalidInput(fmt::format("probe labels must be [N] = [{}], got {}", n, c10::str(y_in.sizes())));
  }
  if (!(options.test_fraction > 0 && options.test_fraction < 1)) {
    throw InvalidInput(fmt::format("test_fraction must be in (0, 1), got {}", options.test_fraction));
  }
  if (options.l2 < 0) throw InvalidInput(fmt::format("l2 must be >= 0, got {}", options.l2));
  const auto n_test = static_cast<int64_t>(std::llround(n * options.test_fraction));
  if (n_test < 1 || n - n_test < 2) {
    throw InvalidInput(fmt::format("{} examples are too few for a held-out split of {}", n, options.test_fraction));
  }
  std::vector<int64_t> labels;
  Vector targets;
  int64_t classes = 0;
  if (kind == ProbeKind::logistic) {
    if (at::isFloatingType(y_in.scalar_type())) {
      throw InvalidInput("logistic probe labels must be integer class ids; use kind='ridge' for real targets");
    }
    at::Tensor y = y_in.to(at::kCPU, at::kLong).contiguous();
    labels.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    for (int64_t label : labels) {
      if (label < 0) throw InvalidInput(fmt::format("class ids must be >= 0, got {}", label));
      classes = std::max(classes, label + 1);
    }
    if (classes < 2) throw InvalidInput("a logistic probe needs at least two classes");
  } else {
    at::Tensor y = y_in.to(at::kCPU, at::kDouble).contiguous();
    targets = Eigen::Map<const Vector>(y.data_ptr<double>(), n);
  }
  const Matrix x = to_matrix(x_in);
  if (!x.allFinite()) throw InvalidInput("probe features contain NaN or infinity");

  const std::vector<int64_t> order = permutation(n, options.seed);
  const std::vector<int64_t> test_index(order.begin(), order.begin() + n_test);
  const std::vector<int64_t> train_index(order.begin() + n_test, order.end());
  const Standardizer standardizer(rows(x, train_index));
  const Matrix train_x = standardizer.apply(rows(x, train_index));
  const Matrix test_x = standardizer.apply(rows(x, test_index));

  auto split = [&](const std::vector<int64_t>& y_ids, const Vector& y_real, const std::vector<int64_t>& index,
                   std::vector<int64_t>& ids_out, Vector& real_out) {
    ids_out.clear();
    real_out.resize(static_cast<Eigen::Index>(index.size()));
    for (size_t i = 0; i < index.size(); ++i) {
      if (kind == ProbeKind::logistic) {
        ids_out.push_back(y_ids[index[i]]);
      } else {
        real_out[static_cast<Eigen::Index>(i)] = y_real[index[i]];
      }
    }
  };
  std::vector<int64_t> train_ids, test_ids;
  Vector train_y, test_y;
  split(labels, targets, train_index, train_ids, train_y);
  split(labels, targets, test_index, test_ids, test_y);
  Scores real = fit_and_score(train_x, test_x, train_ids, test_ids, train_y, test_y, kind, classes, options);

  ProbeResult result;
  result.metric = kind == ProbeKind::logistic ? "accuracy" : "r2";
  result.train_score = real.train;
  result.test_score = real.test;
  result.n_train = n - n_test;
  result.n_test = n_test;
  result.iterations = real.fit.iterations;
  result.control_score = std::numeric_limits<double>::quiet_NaN();
  if (kind == ProbeKind::logistic) {
    std::vector<int64_t> counts(classes, 0);
    for (int64_t label : test_ids) ++counts[label];
    result.chance = static_cast<double>(*std::max_element(counts.begin(), counts.end())) / static_cast<double>(n_test);
  }
  if (options.control) {
    // The same probe on labels shuffled across examples: what the probe finds without a signal.
    const std::vector<int64_t> shuffle = permutation(n, options.seed ^ 0x9e3779b97f4a7c15ULL);
    std::vector<int64_t> shuffled_ids(labels.size());
    Vector shuffled_real(targets.size());
    for (int64_t i = 0; i < n; ++i) {
      if (kind == ProbeKind::logistic) {
        shuffled_ids[i] = labels[shuffle[i]];
      } else {
        shuffled_real[i] = targets[shuffle[i]];
      }
    }
    std::vector<int64_t> ctrain_ids, ctest_ids;
    Vector ctrain_y, ctest_y;
    split(shuffled_ids, shuffled_real, train_index, ctrain_ids, ctrain_y);
    split(shuffled_ids, shuffled_real, test_index, ctest_ids, ctest_y);
    result.control_score =
        fit_and_score(train_x, test_x, ctrain_ids, ctest_ids, ctrain_y, ctest_y, kind, classes, options).test;
  }
  // Back to the original feature space: w' = w / scale, b' = b - w' . mean.
  Matrix weight = real.fit.weight.array().rowwise() / standardizer.scale.array();
  Vector bias = real.fit.bias - weight * standardizer.mean.transpose();
  result.weight = to_tensor(weight);
  result.bias = to_tensor(bias).view({-1});
  return result;
}

std::vector<ProbeResult> probe_layers(const std::vector<at::Tensor>& per_layer, const at::Tensor& y, ProbeKind kind,
                                      const ProbeOptions& options) {
  std::vector<ProbeResult> results;
  results.reserve(per_layer.size());
  for (const auto& x : per_layer) results.push_back(train_probe(x, y, kind, options));
  return results;
}

at::Tensor pool_frames(const at::Tensor& activations, const at::Tensor& mask) {
  if (activations.dim() != 3) {
    throw InvalidInput(fmt::format("pool_frames takes [B, T, D] activations, got {}", c10::str(activations.sizes())));
  }
  if (!mask.defined()) return activations.mean(1);
  if (mask.dim() != 2 || mask.size(0) != activations.size(0) || mask.size(1) != activations.size(1)) {
    throw InvalidInput(fmt::format("frame mask must be [B, T] = [{}, {}], got {}", activations.size(0),
                                   activations.size(1), c10::str(mask.sizes())));
  }
  at::Tensor weights = mask.to(activations.scalar_type()).unsqueeze(-1);
  at::Tensor counts = weights.sum(1);
  if ((counts == 0).any().item<bool>()) throw InvalidInput("an item has no valid frames to pool");
  return (activations * weights).sum(1) / counts;
}

std::pair<at::Tensor, at::Tensor> flatten_frames(const at::Tensor& activations, const at::Tensor& labels,
                                                 const at::Tensor& mask) {
  if (activations.dim() != 3 || labels.dim() != 2 || labels.size(0) != activations.size(0) ||
      labels.size(1) != activations.size(1)) {
    throw InvalidInput(fmt::format("flatten_frames takes activations [B, T, D] and labels [B, T]; got {} and {}",
                                   c10::str(activations.sizes()), c10::str(labels.sizes())));
  }
  at::Tensor x = activations.reshape({-1, activations.size(2)});
  at::Tensor y = labels.reshape({-1});
  if (!mask.defined()) return {x, y};
  at::Tensor keep = mask.reshape({-1}).to(at::kBool).to(x.device());
  if (keep.size(0) != x.size(0)) throw InvalidInput("frame mask must be [B, T] like the labels");
  at::Tensor index = keep.nonzero().squeeze(1);
  return {x.index_select(0, index), y.index_select(0, index.to(y.device()))};
}

}  // namespace speechlens::analysis
