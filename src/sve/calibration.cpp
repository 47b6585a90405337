// Calibration-driven synapse vector elimination: see deftnn/sve_calibration.h.
#include "deftnn/sve_calibration.h"

#include <algorithm>
#include <cmath>

#include "deftnn/error.h"
#include "ops/conv.h"

namespace deftnn {
namespace {

int node_of(const Model& model, const std::string& layer) {
  const int i = model.find(layer);
  check(i >= 0, "no layer named '" + layer + "' in the model");
  const std::string t = model.nodes()[i].layer->type();
  check(t == "conv" || t == "fc", "layer '" + layer + "' is a " + t + "; elimination needs conv or fc");
  return i;
}

// The activations feeding node i (its single input) on `images`.
Tensor input_of(Model& model, int i, const Tensor& images) {
  const std::vector<int>& ins = model.nodes()[i].inputs;
  check(ins.size() == 1, "layer '" + model.nodes()[i].name + "' has " + std::to_string(ins.size()) +
                             " inputs; calibration needs one");
  const int v = ins[0];
  if (v == 0) return images;
  // Run the graph up to (and including) node v - 1 on a copy without the later nodes.
  Model head(model.input_shape());
  for (int j = 0; j < v; ++j) {
    const Node& n = model.nodes()[j];
    auto l = make_layer(n.layer->type(), n.layer->attrs());
    head.add(n.name, std::move(l), n.inputs);
    for (Param& q : head.nodes().back().layer->params())
      if (const Param* p = model.nodes()[j].layer->param(q.name)) q.value = p->value;
  }
  return head.forward(images).clone();
}

}  // namespace

Tensor layer_calibration_inputs(Model& model, const std::string& layer, const Tensor& images,
                                int64_t max_columns) {
  const int i = node_of(model, layer);
  check(max_columns > 0, "calibration: max_columns must be positive");
  check(!model.nodes()[i].layer->attrs().has("retained"), "layer '" + layer + "' is already eliminated");
  const Tensor x = input_of(model, i, images);
  const int64_t N = x.dim(0);
  if (model.nodes()[i].layer->type() == "fc") {
    const int64_t K = x.numel() / N, S = std::min(N, max_columns);
    Tensor out({K, S});
    for (int64_t s = 0; s < S; ++s) {
      const float* r = x.data() + (s * N / S) * K;
      for (int64_t k = 0; k < K; ++k) out[k * S + s] = r[k];
    }
    return out;
  }
  const auto* conv = dynamic_cast<const ops::Conv*>(model.nodes()[i].layer.get());
  check(conv != nullptr, "layer '" + layer + "' is not a convolution");
  check(conv->groups() == 1, "layer '" + layer + "' has " + std::to_string(conv->groups()) +
                                 " groups; calibration supports one");
  const ops::ConvGeom g = conv->geometry(x.shape());
  const int64_t K = g.rows(), P = g.cols(), total = N * P, S = std::min(total, max_columns);
  const int64_t per_image = x.numel() / N;
  Tensor out({K, S});
  std::vector<float> col(static_cast<size_t>(K * P));
  int64_t loaded = -1;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t c = s * total / S, n = c / P, p = c % P;
    if (n != loaded) {
      ops::im2col(g, x.data() + n * per_image, col.data(), P);
      loaded = n;
    }
    for (int64_t k = 0; k < K; ++k) out[k * S + s] = col[static_cast<size_t>(k * P + p)];
  }
  return out;
}

Tensor refit_least_squares(const float* W, int64_t M, int64_t K, int64_t ldw,
                           const SynapsePlan& plan, const Tensor& calib, double ridge) {
  check(plan.K == K, "refit: the plan is for K=" + std::to_string(plan.K) + ", the weight has K=" +
                         std::to_string(K));
  check(calib.ndim() == 2 && calib.dim(0) == K,
        "refit: calibration inputs must be K x S with K=" + std::to_string(K) + ", got " +
            shape_str(calib.shape()));
  check(ridge >= 0, "refit: ridge must not be negative");
  const int64_t S = calib.dim(1), Kp = plan.kept();
  const float* X = calib.data();
  for (int64_t i = 0; i < calib.numel(); ++i)
    check(std::isfinite(X[i]), "refit: non-finite calibration input");
  // G = X_r X_r^T (Kp x Kp), H = X X_r^T (K x Kp), in double.
  std::vector<double> G(static_cast<size_t>(Kp * Kp)), H(static_cast<size_t>(K * Kp));
  for (int64_t k = 0; k < K; ++k) {
    const float* xk = X + k * S;
    for (int64_t q = 0; q < Kp; ++q) {
      const float* xq = X + static_cast<int64_t>(plan.retained[q]) * S;
      double s = 0;
      for (int64_t t = 0; t < S; ++t) s += static_cast<double>(xk[t]) * xq[t];
      H[k * Kp + q] = s;
    }
  }
  for (int64_t p = 0; p < Kp; ++p)
    for (int64_t q = 0; q < Kp; ++q) G[p * Kp + q] = H[plan.retained[p] * Kp + q];
  double trace = 0;
  for (int64_t p = 0; p < Kp; ++p) trace += G[p * Kp + p];
  const double lambda = ridge * std::max(trace, 1e-30) / static_cast<double>(Kp);
  for (int64_t p = 0; p < Kp; ++p) G[p * Kp + p] += lambda;
  // Cholesky G = L L^T (in place, lower triangle).
  for (int64_t j = 0; j < Kp; ++j) {
    double d = G[j * Kp + j];
    for (int64_t t = 0; t < j; ++t) d -= G[j * Kp + t] * G[j * Kp + t];
    check(d > 0, "refit: the calibration inputs of the kept rows are rank deficient (use a "
                 "positive ridge or more calibration samples)");
    const double l = std::sqrt(d);
    G[j * Kp + j] = l;
    for (int64_t i = j + 1; i < Kp; ++i) {
      double s = G[i * Kp + j];
      for (int64_t t = 0; t < j; ++t) s -= G[i * Kp + t] * G[j * Kp + t];
      G[i * Kp + j] = s / l;
    }
  }
  // Each row m: rhs = W[m] H (1 x Kp); solve w G = rhs, i.e. G w^T = rhs^T (G symmetric).
  Tensor out({M, Kp});
  std::vector<double> r(static_cast<size_t>(Kp));
  for (int64_t m = 0; m < M; ++m) {
    const float* wm = W + m * ldw;
    std::fill(r.begin(), r.end(), 0.0);
    for (int64_t k = 0; k < K; ++k) {
      const double w = wm[k];
      if (w == 0) continue;
      const double* hk = H.data() + k * Kp;
      for (int64_t q = 0; q < Kp; ++q) r[q] += w * hk[q];
    }
    for (int64_t i = 0; i < Kp; ++i) {   // L y = r
      double s = r[i];
      for (int64_t t = 0; t < i; ++t) s -= G[i * Kp + t] * r[t];
      r[i] = s / G[i * Kp + i];
    }
    for (int64_t i = Kp - 1; i >= 0; --i) {   // L^T w = y
      double s = r[i];
      for (int64_t t = i + 1; t < Kp; ++t) s -= G[t * Kp + i] * r[t];
      r[i] = s / G[i * Kp + i];
    }
    for (int64_t q = 0; q < Kp; ++q) out[m * Kp + q] = static_cast<float>(r[q]);
  }
  return out;
}

void refit_eliminated_layer(Model& model, Model& dense, const std::string& layer, const Tensor& images,
                            double ridge, int64_t max_columns) {
  const int i = node_of(model, layer);
  Layer& el = *model.nodes()[i].layer;
  check(el.attrs().has("retained"), "layer '" + layer + "' is not eliminated; nothing to refit");
  check(el.attrs().get_int("groups", 1) == 1, "layer '" + layer + "' has groups; refit needs one");
  const int d = node_of(dense, layer);
  const Param* dw = dense.nodes()[d].layer->param("weight");
  check(dw != nullptr, "layer '" + layer + "' has no weight in the dense model");
  const int64_t M = dw->value.dim(0), K = dw->value.numel() / M;
  SynapsePlan plan;
  plan.K = K;
  for (const int64_t r : el.attrs().get_ints("retained")) {
    check(r >= 0 && r < K, "layer '" + layer + "': retained row " + std::to_string(r) +
                               " outside the dense layer's K=" + std::to_string(K));
    plan.retained.push_back(static_cast<int32_t>(r));
  }
  plan.scale = static_cast<double>(K) / static_cast<double>(plan.kept());
  const Tensor X = layer_calibration_inputs(dense, layer, images, max_columns);
  const Tensor w = refit_least_squares(dw->value.data(), M, K, K, plan, X, ridge);
  Param* ew = el.param("weight");
  check(ew != nullptr && ew->value.numel() == w.numel(),
        "layer '" + layer + "': eliminated weight does not hold " + shape_str(w.shape()));
  std::copy(w.data(), w.data() + w.numel(), ew->value.data());
  el.invalidate();
}

}  // namespace deftnn
