// Calibration-driven elimination (deftnn/sve_calibration.h): the least-squares refit against a
// naive normal-equations solve and constructed cases, the calibration inputs against a naive
// im2col, and the replaced layer against the dense formula.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/rng.h"
#include "deftnn/optimize.h"
#include "deftnn/sve_calibration.h"

namespace deftnn {
namespace {

Tensor random(Shape s, Rng& rng) {
  Tensor t(std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(-1.0f, 1.0f);
  return t;
}

// Naive: solve (X_r X_r^T + lambda I) w^T = X_r X^T W^T by Gaussian elimination with pivoting.
std::vector<double> naive_refit(const Tensor& W, const Tensor& X, const std::vector<int32_t>& keep,
                                double ridge) {
  const int64_t M = W.dim(0), K = W.dim(1), S = X.dim(1), Kp = static_cast<int64_t>(keep.size());
  std::vector<double> A(Kp * Kp, 0.0), out(M * Kp);
  double tr = 0;
  for (int64_t p = 0; p < Kp; ++p)
    for (int64_t q = 0; q < Kp; ++q)
      for (int64_t t = 0; t < S; ++t) A[p * Kp + q] += double(X[keep[p] * S + t]) * X[keep[q] * S + t];
  for (int64_t p = 0; p < Kp; ++p) tr += A[p * Kp + p];
  for (int64_t p = 0; p < Kp; ++p) A[p * Kp + p] += ridge * tr / Kp;
  for (int64_t m = 0; m < M; ++m) {
    std::vector<double> a = A, b(Kp, 0.0);
    for (int64_t q = 0; q < Kp; ++q)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t t = 0; t < S; ++t) b[q] += double(W[m * K + k]) * X[k * S + t] * X[keep[q] * S + t];
    for (int64_t c = 0; c < Kp; ++c) {
      int64_t piv = c;
      for (int64_t r = c + 1; r < Kp; ++r)
        if (std::fabs(a[r * Kp + c]) > std::fabs(a[piv * Kp + c])) piv = r;
      for (int64_t j = 0; j < Kp; ++j) std::swap(a[c * Kp + j], a[piv * Kp + j]);
      std::swap(b[c], b[piv]);
      for (int64_t r = c + 1; r < Kp; ++r) {
        const double f = a[r * Kp + c] / a[c * Kp + c];
        for (int64_t j = c; j < Kp; ++j) a[r * Kp + j] -= f * a[c * Kp + j];
        b[r] -= f * b[c];
      }
    }
    for (int64_t c = Kp - 1; c >= 0; --c) {
      double s = b[c];
      for (int64_t j = c + 1; j < Kp; ++j) s -= a[c * Kp + j] * out[m * Kp + j];
      out[m * Kp + c] = s / a[c * Kp + c];
    }
  }
  return out;
}

SynapsePlan plan_keeping(int64_t K, const std::vector<int>& drop) {
  std::vector<char> flags(K, 1);
  for (int d : drop) flags[d] = 0;
  return plan_elimination(flags);
}

TEST(SveCalibration, RefitMatchesNaiveNormalEquations) {
  Rng rng(3);
  const int64_t M = 5, K = 9, S = 40;
  Tensor W = random({M, K}, rng), X = random({K, S}, rng);
  const SynapsePlan plan = plan_keeping(K, {2, 5, 7});
  for (double ridge : {0.0, 0.05}) {
    const Tensor w = refit_least_squares(W.data(), M, K, K, plan, X, ridge);
    const std::vector<double> ref = naive_refit(W, X, plan.retained, ridge);
    ASSERT_EQ(w.shape(), (Shape{M, plan.kept()}));
    for (int64_t i = 0; i < w.numel(); ++i) EXPECT_NEAR(w[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])));
  }
}

TEST(SveCalibration, RefitKeepingEverythingIsTheIdentityAndAbsorbsDuplicatedInputs) {
  Rng rng(4);
  const int64_t M = 4, K = 6, S = 50;
  Tensor W = random({M, K}, rng), X = random({K, S}, rng);
  const Tensor all = refit_least_squares(W.data(), M, K, K, plan_keeping(K, {}), X, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) EXPECT_NEAR(all[m * K + k], W[m * K + k], 1e-4);
  // Input row 4 is exactly 2 x row 1: dropping row 4, the refit moves its weight onto row 1
  // (W'[:,1] = W[:,1] + 2 W[:,4]) and reproduces W X; the uniform K/(K-D) scale does not.
  for (int64_t t = 0; t < S; ++t) X[4 * S + t] = 2 * X[1 * S + t];
  const SynapsePlan plan = plan_keeping(K, {4});
  const Tensor w = refit_least_squares(W.data(), M, K, K, plan, X, 0.0);
  const Tensor u = truncate_weights(W.data(), M, K, K, plan);
  double err_ls = 0, err_u = 0;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t p = 0; p < plan.kept(); ++p) {
      const int k = plan.retained[p];
      const double want = W[m * K + k] + (k == 1 ? 2.0 * W[m * K + 4] : 0.0);
      EXPECT_NEAR(w[m * plan.kept() + p], want, 1e-3) << m << "," << k;
    }
    for (int64_t t = 0; t < S; ++t) {
      double full = 0, ls = 0, un = 0;
      for (int64_t k = 0; k < K; ++k) full += double(W[m * K + k]) * X[k * S + t];
      for (int64_t p = 0; p < plan.kept(); ++p) {
        ls += double(w[m * plan.kept() + p]) * X[plan.retained[p] * S + t];
        un += double(u[m * plan.kept() + p]) * X[plan.retained[p] * S + t];
      }
      err_ls += (full - ls) * (full - ls);
      err_u += (full - un) * (full - un);
    }
  }
  EXPECT_LT(err_ls, 1e-6);
  EXPECT_GT(err_u, 1e-2);
  EXPECT_THROW(refit_least_squares(W.data(), M, K, K, plan_keeping(K + 1, {}), X, 0.0), Error);
}

TEST(SveCalibration, InputsAreTheFcFeaturesAndTheConvColumns) {
  Rng rng(5);
  Model m({2, 5, 6});
  m.add("conv", "conv", Attrs().set("out_channels", 3).set("kernel", 3).set("stride", 2).set("pad", 1));
  m.add("relu", "relu", Attrs());
  m.add("fc", "fc", Attrs().set("out_features", 4));
  m.init_params(2);
  Tensor x = random({3, 2, 5, 6}, rng);
  // conv: columns (image, output position) of the naive im2col; OH = 3, OW = 3.
  const Tensor c = layer_calibration_inputs(m, "conv", x);
  ASSERT_EQ(c.shape(), (Shape{18, 27}));
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t oh = 0; oh < 3; ++oh)
      for (int64_t ow = 0; ow < 3; ++ow)
        for (int64_t ch = 0; ch < 2; ++ch)
          for (int64_t i = 0; i < 3; ++i)
            for (int64_t j = 0; j < 3; ++j) {
              const int64_t h = oh * 2 - 1 + i, w = ow * 2 - 1 + j;
              const float want = (h < 0 || h >= 5 || w < 0 || w >= 6) ? 0.0f
                                                                       : x[((n * 2 + ch) * 5 + h) * 6 + w];
              ASSERT_EQ(c[((ch * 3 + i) * 3 + j) * 27 + n * 9 + oh * 3 + ow], want);
            }
  // fc: the relu output per image, one column each; the subsampled version picks every 3rd.
  const Tensor f = layer_calibration_inputs(m, "fc", x);
  ASSERT_EQ(f.shape(), (Shape{27, 3}));
  Model head({2, 5, 6});
  head.add("conv", "conv", Attrs().set("out_channels", 3).set("kernel", 3).set("stride", 2).set("pad", 1));
  head.add("relu", "relu", Attrs());
  for (Param& q : head.nodes()[0].layer->params()) q.value = m.nodes()[0].layer->param(q.name)->value;
  const Tensor h = head.forward(x);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t k = 0; k < 27; ++k) ASSERT_EQ(f[k * 3 + n], h[n * 27 + k]);
  EXPECT_EQ(layer_calibration_inputs(m, "conv", x, 5).dim(1), 5);
  EXPECT_THROW(layer_calibration_inputs(m, "relu", x), Error);
  EXPECT_THROW(layer_calibration_inputs(m, "nope", x), Error);
}

TEST(SveCalibration, ReplacedLayerComputesWithTheKeptColumns) {
  Rng rng(6);
  Model m({7});
  m.add("fc", "fc", Attrs().set("out_features", 3));
  m.init_params(1);
  const Tensor b = m.nodes()[0].layer->param("bias")->value.clone();
  Tensor x = random({2, 7}, rng);
  const std::vector<int64_t> keep{6, 0, 3};
  Tensor w = random({3, 3}, rng);
  set_layer_elimination(m, "fc", keep, w);
  const Tensor& y = m.forward(x);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 3; ++o) {
      double s = b[o];
      for (int64_t p = 0; p < 3; ++p) s += double(w[o * 3 + p]) * x[n * 7 + keep[p]];
      EXPECT_NEAR(y[n * 3 + o], s, 1e-5);
    }
  EXPECT_THROW(set_layer_elimination(m, "fc", keep, w), Error);   // already eliminated
}

TEST(SveCalibration, RefitEliminatedLayerUsesTheDenseInputs) {
  Rng rng(7);
  Model dense({2, 6, 6});
  dense.add("conv", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
  dense.add("relu", "relu", Attrs());
  dense.add("fc", "fc", Attrs().set("out_features", 5));
  dense.init_params(3);
  Model m({2, 6, 6});
  m.add("conv", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
  m.add("relu", "relu", Attrs());
  m.add("fc", "fc", Attrs().set("out_features", 5));
  for (size_t n = 0; n < 3; ++n)
    for (Param& q : m.nodes()[n].layer->params()) q.value = dense.nodes()[n].layer->param(q.name)->value.clone();
  const std::vector<int32_t> keep{0, 3, 5, 8, 9, 12, 17};
  const Tensor& W = dense.nodes()[0].layer->param("weight")->value;
  std::vector<char> flags(18, 0);
  for (int32_t k : keep) flags[k] = 1;
  const SynapsePlan plan = plan_elimination(flags);
  set_layer_elimination(m, "conv", std::vector<int64_t>(plan.retained.begin(), plan.retained.end()),
                        truncate_weights(W.data(), 4, 18, 18, plan));
  Tensor x = random({5, 2, 6, 6}, rng);
  refit_eliminated_layer(m, dense, "conv", x, 0.01);
  const Tensor want = refit_least_squares(W.data(), 4, 18, 18, plan, layer_calibration_inputs(dense, "conv", x), 0.01);
  const Tensor& got = m.nodes()[0].layer->param("weight")->value;
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < got.numel(); ++i) EXPECT_EQ(got[i], want[i]);
  EXPECT_THROW(refit_eliminated_layer(m, dense, "fc", x), Error);   // not eliminated
}

// optimize() with refit_images: each candidate's kept columns are the least-squares refit (before
// fine-tuning, here none), i.e. what refit_eliminated_layer gives for the same search.
TEST(SveCalibration, OptimiserRefitsCandidatesWhenGivenCalibrationImages) {
  Rng rng(8);
  auto build = [] {
    Model b({1, 6, 6});
    b.add("conv", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
    b.add("relu", "relu", Attrs());
    b.add("fc1", "fc", Attrs().set("out_features", 12));
    b.add("relu2", "relu", Attrs());
    b.add("fc2", "fc", Attrs().set("out_features", 3));
    b.init_params(4);
    return b;
  };
  Model base = build();
  Dataset d;
  d.name = "random";
  d.num_classes = 3;
  d.images = random({40, 1, 6, 6}, rng);
  for (int i = 0; i < 40; ++i) d.labels.push_back(i % 3);
  OptimizeOptions o;
  o.layers = {"fc1"};
  o.thresholds = {0.2};
  o.align = 1;
  o.finetune.epochs = 0;
  o.time_batch = 2;
  o.time_iterations = 1;
  o.refit_images = random({30, 1, 6, 6}, rng);
  const Optimization opt = optimize(base, d, d, o);
  ASSERT_EQ(opt.candidates.size(), 1u);
  const Candidate& c = opt.candidates[0];
  ASSERT_LT(c.elimination.kept, c.elimination.K);
  // The same search by hand, then the refit.
  Model want = build(), dense = build();
  SynapseSearchOptions so;
  so.correlation_threshold = 0.2;
  so.align = 1;
  const LayerElimination e = eliminate_layer(want, "fc1", so);
  EXPECT_EQ(e.retained, c.elimination.retained);
  refit_eliminated_layer(want, dense, "fc1", o.refit_images);
  const Tensor& w = want.nodes()[2].layer->param("weight")->value;
  ASSERT_NE(c.layer, nullptr);
  const Tensor& got = c.layer->param("weight")->value;
  ASSERT_EQ(got.shape(), w.shape());
  for (int64_t i = 0; i < w.numel(); ++i) EXPECT_EQ(got[i], w[i]);
  // Without calibration images the candidate keeps the paper's uniform scale.
  o.refit_images = Tensor();
  const Optimization plain = optimize(base, d, d, o);
  Model scaled = build();
  eliminate_layer(scaled, "fc1", so);
  const Tensor& ws = scaled.nodes()[2].layer->param("weight")->value;
  const Tensor& gs = plain.candidates.at(0).layer->param("weight")->value;
  for (int64_t i = 0; i < ws.numel(); ++i) EXPECT_EQ(gs[i], ws[i]);
}

// A candidate that fine-tuning makes worse (here: a learning rate that diverges) keeps the
// searched weights and accuracy.
TEST(SveCalibration, OptimiserKeepsSearchedWeightsWhenFineTuningHurts) {
  Rng rng(9);
  auto build = [] {
    Model b({1, 6, 6});
    b.add("fc1", "fc", Attrs().set("out_features", 16));
    b.add("relu", "relu", Attrs());
    b.add("fc2", "fc", Attrs().set("out_features", 3));
    b.init_params(5);
    return b;
  };
  Model base = build();
  Dataset d;
  d.name = "self-labelled";
  d.num_classes = 3;
  d.images = random({60, 1, 6, 6}, rng);
  const Tensor& y = base.forward(d.images);
  for (int i = 0; i < 60; ++i) {
    int best = 0;
    for (int c = 1; c < 3; ++c)
      if (y[i * 3 + c] > y[i * 3 + best]) best = c;
    d.labels.push_back(best);
  }
  OptimizeOptions o;
  o.layers = {"fc1"};
  o.thresholds = {0.3};
  o.align = 1;
  o.finetune.epochs = 2;
  o.finetune.lr = 1e4;   // diverges
  o.finetune.batch = 8;
  o.time_batch = 2;
  o.time_iterations = 1;
  const Optimization opt = optimize(base, d, d, o);
  ASSERT_EQ(opt.candidates.size(), 1u);
  const Candidate& c = opt.candidates[0];
  ASSERT_LT(c.elimination.kept, c.elimination.K);
  EXPECT_EQ(c.accuracy, c.accuracy_searched);
  Model want = build();
  SynapseSearchOptions so;
  so.correlation_threshold = 0.3;
  so.align = 1;
  eliminate_layer(want, "fc1", so);
  const Tensor& w = want.nodes()[0].layer->param("weight")->value;
  const Tensor& got = c.layer->param("weight")->value;
  ASSERT_EQ(got.shape(), w.shape());
  for (int64_t i = 0; i < w.numel(); ++i) ASSERT_EQ(got[i], w[i]);
}

}  // namespace
}  // namespace deftnn
