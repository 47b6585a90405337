// Synapse vector elimination at run time (src/ops/conv.cpp, src/ops/fc.cpp with the `retained`
// attribute) and the optimiser (src/sve/optimize.cpp): the truncated layers against a naive GEMM
// on the gathered rows, identity when everything is retained, backward against finite
// differences, and a tiny end-to-end optimisation whose saved frontier reloads and selects the
// same configuration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/model.h"
#include "deftnn/optimize.h"
#include "deftnn/rng.h"
#include "deftnn/sve.h"
#include "deftnn/tensor.h"
#include "deftnn/zoo.h"
#include "ops/im2col.h"

using namespace deftnn;

namespace {

Tensor rand_tensor(const Shape& s, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(lo, hi);
  return t;
}

Tensor forward(Layer& l, const Tensor& x, bool frozen = false) {
  l.infer({x.shape()});
  Tensor out;
  RunContext ctx;
  ctx.frozen = frozen;
  l.forward({&x}, out, ctx);
  return out;
}

// A random subset of `keep` of K indices per group, in a scrambled order (the truncated weight
// may use any order; the layer must follow the list, not sort it).
std::vector<int64_t> random_retained(int64_t groups, int64_t K, int64_t keep, Rng& rng) {
  std::vector<int64_t> all;
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> idx(static_cast<size_t>(K));
    std::iota(idx.begin(), idx.end(), 0);
    for (int64_t i = K - 1; i > 0; --i)
      std::swap(idx[i], idx[static_cast<int64_t>(rng.uniform() * static_cast<double>(i + 1)) % (i + 1)]);
    all.insert(all.end(), idx.begin(), idx.begin() + keep);
  }
  return all;
}

// Central-difference gradient check of loss = sum(out * R) for the input and every trainable
// parameter (same rule as tests/test_ops.cpp).
void grad_check(Layer& l, Tensor x, double eps = 1e-2, double atol = 2e-3, double rtol = 1e-2) {
  RunContext ctx{true, nullptr};
  const Shape os = l.infer({x.shape()});
  Rng r(99);
  const Tensor R = rand_tensor(os, r);
  auto loss = [&]() {
    Tensor out;
    l.forward({&x}, out, ctx);
    double s = 0.0;
    for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out[i]) * R[i];
    return s;
  };
  for (auto& p : l.params())
    if (p.trainable) p.grad.zero();
  Tensor out, dx;
  l.forward({&x}, out, ctx);
  std::vector<Tensor*> din{&dx};
  l.backward({&x}, out, R, din, ctx);
  auto compare = [&](float* v, int64_t n, const Tensor& ana, const std::string& what) {
    ASSERT_EQ(ana.numel(), n) << what;
    for (int64_t i = 0; i < n; ++i) {
      const float keep = v[i];
      v[i] = keep + static_cast<float>(eps);
      const double fp = loss();
      v[i] = keep - static_cast<float>(eps);
      const double fm = loss();
      v[i] = keep;
      const double num = (fp - fm) / (2 * eps), a = ana[i];
      ASSERT_LE(std::fabs(num - a), atol + rtol * std::max(std::fabs(num), std::fabs(a)))
          << l.type() << " " << what << "[" << i << "]: numeric " << num << " analytic " << a;
    }
  };
  compare(x.data(), x.numel(), dx, "input");
  for (auto& p : l.params()) {
    if (!p.trainable) continue;
    const Tensor g = p.grad.clone();
    compare(p.value.data(), p.value.numel(), g, "param " + p.name);
  }
}

struct ConvCase {
  int64_t N, C, H, W, O, k, stride, pad, groups;
};

Attrs conv_attrs(const ConvCase& c) {
  return Attrs()
      .set("out_channels", c.O)
      .set("kernel", c.k)
      .set("stride", c.stride)
      .set("pad", c.pad)
      .set("groups", c.groups);
}

ops::ConvGeom geom(const ConvCase& c) {
  ops::ConvGeom g;
  g.C = c.C / c.groups;
  g.H = c.H;
  g.W = c.W;
  g.kh = g.kw = c.k;
  g.sh = g.sw = c.stride;
  g.pt = g.pl = c.pad;
  g.OH = (c.H + 2 * c.pad - c.k) / c.stride + 1;
  g.OW = (c.W + 2 * c.pad - c.k) / c.stride + 1;
  return g;
}

const std::vector<ConvCase> kConvCases = {
    {1, 4, 7, 6, 6, 3, 1, 1, 2},    // groups, one image (GEMM straight into the output)
    {5, 3, 6, 6, 4, 3, 2, 0, 1},    // stride 2, several images batched side by side
    {3, 6, 5, 5, 4, 1, 1, 0, 2},    // 1x1 (the dense path reads the input directly)
    {40, 2, 4, 4, 3, 2, 1, 0, 1},   // many small images: chunked, multi-threaded
};

}  // namespace

// The truncated conv equals scale-free naive GEMM W' * col' over the gathered rows (+ bias), for
// every group, with the weight taken as given (the K/K' scale is folded into W' by the caller).
TEST(SveRuntimeConv, TruncatedEqualsNaiveGemmOnGatheredRows) {
  Rng rng(11);
  for (const auto& c : kConvCases) {
    const ops::ConvGeom g = geom(c);
    const int64_t K = g.rows(), P = g.cols(), Og = c.O / c.groups;
    for (int64_t keep : {int64_t{1}, K / 2 + 1, K}) {
      const std::vector<int64_t> ret = random_retained(c.groups, K, keep, rng);
      auto l = make_layer("conv", conv_attrs(c).set("retained", ret));
      const Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
      l->infer({x.shape()});
      ASSERT_EQ(l->param("weight")->value.shape(), (Shape{c.O, keep}));
      l->param("weight")->value = rand_tensor({c.O, keep}, rng);
      l->param("bias")->value = rand_tensor({c.O}, rng);
      const Tensor y = forward(*l, x);
      const Tensor& w = l->param("weight")->value;
      const Tensor& b = l->param("bias")->value;
      std::vector<float> col(static_cast<size_t>(K * P));
      for (int64_t n = 0; n < c.N; ++n)
        for (int64_t gi = 0; gi < c.groups; ++gi) {
          ops::im2col(g, x.data() + (n * c.C + gi * g.C) * c.H * c.W, col.data());
          for (int64_t o = 0; o < Og; ++o)
            for (int64_t p = 0; p < P; ++p) {
              double s = b[gi * Og + o];
              for (int64_t q = 0; q < keep; ++q)
                s += static_cast<double>(w[(gi * Og + o) * keep + q]) *
                     col[ret[gi * keep + q] * P + p];
              const float got = y[((n * c.O + gi * Og + o) * P) + p];
              ASSERT_NEAR(got, s, 1e-4 * std::max(1.0, std::fabs(s)))
                  << "case C=" << c.C << " k=" << c.k << " keep=" << keep << " n=" << n;
            }
        }
      EXPECT_EQ(l->flops({x.shape()}, y.shape()), 2 * y.numel() * keep);
    }
  }
}

// Retaining every row, in order, with the dense weight reshaped to [O, K]: bitwise the dense output.
TEST(SveRuntimeConv, KeepingAllRowsIsIdenticalToDense) {
  Rng rng(12);
  for (const auto& c : kConvCases) {
    const int64_t K = geom(c).rows();
    auto dense = make_layer("conv", conv_attrs(c));
    const Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
    dense->infer({x.shape()});
    dense->init_params(rng);
    dense->param("bias")->value = rand_tensor({c.O}, rng);
    std::vector<int64_t> all;
    for (int64_t gi = 0; gi < c.groups; ++gi)
      for (int64_t k = 0; k < K; ++k) all.push_back(k);
    auto elim = make_layer("conv", conv_attrs(c).set("retained", all));
    elim->infer({x.shape()});
    elim->param("weight")->value = dense->param("weight")->value.clone().reshaped({c.O, K});
    elim->param("bias")->value = dense->param("bias")->value.clone();
    const Tensor yd = forward(*dense, x), ye = forward(*elim, x);
    ASSERT_EQ(yd.shape(), ye.shape());
    for (int64_t i = 0; i < yd.numel(); ++i) ASSERT_EQ(yd[i], ye[i]) << "at " << i;
  }
}

TEST(SveRuntimeConv, BackwardMatchesFiniteDifferences) {
  Rng rng(13);
  for (const auto& c : std::vector<ConvCase>{{2, 4, 5, 5, 4, 3, 1, 1, 2}, {3, 3, 4, 4, 2, 1, 1, 0, 1}}) {
    const int64_t K = geom(c).rows();
    auto l = make_layer("conv", conv_attrs(c).set("retained", random_retained(c.groups, K, K / 2, rng)));
    const Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
    l->infer({x.shape()});
    l->init_params(rng);
    l->param("bias")->value = rand_tensor({c.O}, rng);
    grad_check(*l, x);
  }
}

TEST(SveRuntimeConv, BadRetainedListsNameTheProblem) {
  const ConvCase c{1, 4, 5, 5, 4, 3, 1, 1, 2};
  EXPECT_THROW(make_layer("conv", conv_attrs(c).set("retained", std::vector<int64_t>{0, 1, 2})), Error);
  auto l = make_layer("conv", conv_attrs(c).set("retained", std::vector<int64_t>{0, 18, 1, 2}));
  EXPECT_THROW(l->infer({{1, 4, 5, 5}}), Error);   // 18 >= K = 2 * 9
  auto d = make_layer("conv", conv_attrs(c).set("retained", std::vector<int64_t>{3, 3, 1, 2}));
  EXPECT_THROW(d->infer({{1, 4, 5, 5}}), Error);   // repeated row in group 0
}

TEST(SveRuntimeFc, TruncatedEqualsNaiveGemmOnGatheredColumns) {
  Rng rng(21);
  // Batch 1 (GEMV), up to 64 (weights as the GEMM's A, packed per call or, frozen, once) and
  // above (X as A): the retained columns gathered by each path's packing step.
  for (int64_t N : {1, 7, 33, 70})
  for (bool frozen : {false, true}) {
    const int64_t I = 24, O = 9;
    for (int64_t keep : {int64_t{1}, int64_t{11}, I}) {
      const std::vector<int64_t> ret = random_retained(1, I, keep, rng);
      auto l = make_layer("fc", Attrs().set("out_features", O).set("retained", ret));
      const Tensor x = rand_tensor({N, 2, 3, 4}, rng);
      l->infer({x.shape()});
      ASSERT_EQ(l->param("weight")->value.shape(), (Shape{O, keep}));
      l->param("weight")->value = rand_tensor({O, keep}, rng);
      l->param("bias")->value = rand_tensor({O}, rng);
      const Tensor y = forward(*l, x, frozen);
      const Tensor& w = l->param("weight")->value;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          double s = l->param("bias")->value[o];
          for (int64_t q = 0; q < keep; ++q) s += static_cast<double>(w[o * keep + q]) * x[n * I + ret[q]];
          ASSERT_NEAR(y[n * O + o], s, 1e-4 * std::max(1.0, std::fabs(s)));
        }
      EXPECT_EQ(l->flops({x.shape()}, y.shape()), 2 * N * O * keep);
    }
  }
}

TEST(SveRuntimeFc, KeepingAllColumnsIsIdenticalToDense) {
  Rng rng(22);
  for (int64_t N : {1, 5, 64}) {
    const int64_t I = 40, O = 12;
    auto dense = make_layer("fc", Attrs().set("out_features", O));
    const Tensor x = rand_tensor({N, I}, rng);
    dense->infer({x.shape()});
    dense->init_params(rng);
    dense->param("bias")->value = rand_tensor({O}, rng);
    std::vector<int64_t> all(static_cast<size_t>(I));
    std::iota(all.begin(), all.end(), 0);
    auto elim = make_layer("fc", Attrs().set("out_features", O).set("retained", all));
    elim->infer({x.shape()});
    elim->param("weight")->value = dense->param("weight")->value.clone();
    elim->param("bias")->value = dense->param("bias")->value.clone();
    const Tensor yd = forward(*dense, x), ye = forward(*elim, x);
    for (int64_t i = 0; i < yd.numel(); ++i) ASSERT_EQ(yd[i], ye[i]) << "at " << i;
  }
}

TEST(SveRuntimeFc, BackwardMatchesFiniteDifferences) {
  Rng rng(23);
  auto l = make_layer("fc", Attrs().set("out_features", 4).set("retained", std::vector<int64_t>{5, 0, 3}));
  const Tensor x = rand_tensor({3, 2, 3}, rng);
  l->infer({x.shape()});
  l->init_params(rng);
  grad_check(*l, x);
  EXPECT_THROW(make_layer("fc", Attrs().set("out_features", 4).set("retained", std::vector<int64_t>{6}))
                   ->infer({{3, 2, 3}}),
               Error);
}

// Through the library path: plan_layer at alpha > 1 keeps every vector with scale 1, and the
// truncated weights then reproduce the dense layer bit for bit.
TEST(SveRuntimeConv, AlphaAboveOneKeepsAllAndMatchesDense) {
  Rng rng(14);
  const ConvCase c{2, 4, 6, 6, 6, 3, 1, 1, 2};
  auto dense = make_layer("conv", conv_attrs(c));
  const Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
  dense->infer({x.shape()});
  dense->init_params(rng);
  SynapseSearchOptions so;
  so.correlation_threshold = 1.5;
  const LayerSynapsePlan plan = plan_layer(dense->param("weight")->value, c.groups, so);
  std::vector<int64_t> ret;
  for (const auto& p : plan.plans) {
    EXPECT_EQ(p.scale, 1.0);
    ret.insert(ret.end(), p.retained.begin(), p.retained.end());
  }
  const std::vector<Tensor> wt = truncate_layer_weights(dense->param("weight")->value, plan);
  auto elim = make_layer("conv", conv_attrs(c).set("retained", ret));
  elim->infer({x.shape()});
  float* w = elim->param("weight")->value.data();
  for (const Tensor& t : wt) w = std::copy(t.data(), t.data() + t.numel(), w);
  elim->param("bias")->value = dense->param("bias")->value.clone();
  const Tensor yd = forward(*dense, x), ye = forward(*elim, x);
  for (int64_t i = 0; i < yd.numel(); ++i) ASSERT_EQ(yd[i], ye[i]) << "at " << i;
}

// ---------------------------------------------------------------------------------------------
// The optimiser on a tiny synthetic problem.

#include "deftnn/io.h"
#include "deftnn/optimize.h"
#include "deftnn/train.h"

namespace {

// 4 classes of 8x8 images: class c lights up quadrant c (plus noise).
Dataset synthetic(int64_t n, uint64_t seed) {
  Dataset d;
  d.images = Tensor({n, 1, 8, 8});
  d.num_classes = 4;
  d.name = "synthetic";
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % 4);
    d.labels.push_back(c);
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t x = 0; x < 8; ++x) {
        const bool on = (y / 4) * 2 + (x / 4) == c;
        d.images[(i * 8 + y) * 8 + x] = (on ? 0.7f : 0.1f) + rng.uniform(-0.3f, 0.3f);
      }
  }
  return d;
}

Model tiny_model() {
  Model m({1, 8, 8});
  m.add("conv1", "conv", Attrs().set("out_channels", 6).set("kernel", 3));
  m.add("relu1", "relu", Attrs());
  m.add("ip1", "fc", Attrs().set("out_features", 16));
  m.add("relu2", "relu", Attrs());
  m.add("ip2", "fc", Attrs().set("out_features", 4));
  m.init_params(3);
  return m;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("deftnn_sve_opt_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

}  // namespace

TEST(SveOptimize, DefaultLayersSkipTheClassifier) {
  Model m = tiny_model();
  EXPECT_EQ(default_elimination_layers(m), (std::vector<std::string>{"conv1", "ip1"}));
  EXPECT_EQ(eliminable_layers(m), (std::vector<std::string>{"conv1", "ip1", "ip2"}));
  SynapseSearchOptions so;
  so.correlation_threshold = 2.0;   // keeps everything
  Model e = tiny_model();
  const LayerElimination le = eliminate_layer(e, "ip1", so);
  EXPECT_EQ(le.kept, le.K);
  const Tensor x = synthetic(5, 1).images;
  const Tensor y0 = m.forward(x).clone(), y1 = e.forward(x).clone();
  for (int64_t i = 0; i < y0.numel(); ++i) ASSERT_EQ(y0[i], y1[i]);   // alpha > 1: identical
  EXPECT_EQ(eliminable_layers(e), (std::vector<std::string>{"conv1", "ip2"}));
  EXPECT_THROW(eliminate_layer(e, "relu1", so), Error);
  EXPECT_THROW(eliminate_layer(e, "nope", so), Error);
}

TEST(SveOptimize, FrontierSavesReloadsAndSelectsTheSameConfiguration) {
  const Dataset tr = synthetic(320, 7), val = synthetic(160, 8);
  Model base = tiny_model();
  TrainConfig tc;
  tc.epochs = 4;
  tc.batch = 32;
  tc.lr = 0.05;
  tc.progress = false;
  train(base, tr, nullptr, tc);

  OptimizeOptions o;
  o.thresholds = {1.5, 0.6, 0.3, 0.0};
  o.align = 1;
  o.finetune.epochs = 1;
  o.finetune.batch = 32;
  o.time_batch = 4;
  o.time_iterations = 3;
  o.max_evaluated = 8;
  std::vector<std::string> log;
  o.progress = [&](const std::string& s) { log.push_back(s); };
  Optimization opt = optimize(base, tr, val, o);
  ASSERT_FALSE(opt.candidates.empty());
  ASSERT_FALSE(opt.frontier.empty());
  EXPECT_FALSE(log.empty());
  for (const Candidate& c : opt.candidates) {
    EXPECT_LT(c.elimination.kept, c.elimination.K);
    EXPECT_GT(c.layer_ms, 0);
  }
  // The frontier is Pareto: sorted slowest first, accuracy non-increasing along it.
  for (size_t i = 1; i < opt.frontier.size(); ++i) {
    EXPECT_LE(opt.frontier[i].ms, opt.frontier[i - 1].ms);
    EXPECT_LT(opt.frontier[i].accuracy, opt.frontier[i - 1].accuracy);
  }

  TempDir dir;
  save_optimization(opt, dir.path.string());
  Optimization back = load_optimization(dir.path.string());
  ASSERT_EQ(back.candidates.size(), opt.candidates.size());
  ASSERT_EQ(back.frontier.size(), opt.frontier.size());
  EXPECT_EQ(back.base_accuracy, opt.base_accuracy);
  for (size_t i = 0; i < opt.candidates.size(); ++i)
    EXPECT_EQ(back.candidates[i].elimination.retained, opt.candidates[i].elimination.retained);
  const Tensor x = val.images;
  for (const SelectTarget t : {SelectTarget{0.0, -1}, SelectTarget{2.0, -1}, SelectTarget{100.0, -1},
                               SelectTarget{-1, 1.0}, SelectTarget{-1, 1.3}, SelectTarget{-1, 50.0}}) {
    const int a = select_point(opt, t), b = select_point(back, t);
    ASSERT_GE(a, 0);
    EXPECT_EQ(a, b);
    EXPECT_EQ(opt.frontier[a].choice, back.frontier[b].choice);
    Model ma = compose(opt, opt.frontier[a].choice), mb = compose(back, back.frontier[b].choice);
    const Tensor ya = ma.forward(x).clone(), yb = mb.forward(x).clone();
    for (int64_t i = 0; i < ya.numel(); ++i) ASSERT_EQ(ya[i], yb[i]);
  }
  // Loss 0: a point at least as accurate as the base (the dense configuration qualifies).
  EXPECT_GE(opt.frontier[select_point(opt, {0.0, -1})].accuracy, opt.base_accuracy);
  EXPECT_EQ(parse_target("max-loss=0.5").max_accuracy_loss, 0.5);
  EXPECT_EQ(parse_target("min-speedup=2").min_speedup, 2.0);
  EXPECT_THROW(parse_target("speed=2"), Error);

  // A composed model saves and loads like any other (what `frontier -o` writes).
  const int s = select_point(opt, {100.0, -1});
  Model chosen = compose(opt, opt.frontier[s].choice);
  const std::string f = (dir.path / "chosen.deft").string();
  save_model(chosen, f);
  Model reloaded = load_model(f);
  const Tensor y0 = chosen.forward(x).clone(), y1 = reloaded.forward(x).clone();
  for (int64_t i = 0; i < y0.numel(); ++i) ASSERT_EQ(y0[i], y1[i]);

  // Errors name the file.
  std::filesystem::remove(dir.path / opt.candidates[0].file);
  try {
    load_optimization(dir.path.string());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(opt.candidates[0].file), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_optimization((dir.path / "missing").string()), Error);
}

TEST(SveOptimize, PerLayerThresholdsReplaceTheSweepForTheLayersNamed) {
  const Dataset tr = synthetic(64, 21), val = synthetic(32, 22);
  Model base = tiny_model();
  OptimizeOptions o;
  o.thresholds = {2.0};   // above 1: keeps every vector, so the default sweep adds nothing
  o.layer_thresholds["ip1"] = {0.3, 0.0};
  o.align = 1;
  o.finetune.epochs = 0;
  o.time_batch = 2;
  o.time_iterations = 1;
  o.max_evaluated = 2;
  const Optimization opt = optimize(base, tr, val, o);
  // Only ip1 has candidates, one per threshold of its own sweep (most retained first), each
  // the search eliminate_layer does at that threshold.
  std::vector<int64_t> kept;
  for (const Candidate& c : opt.candidates) {
    EXPECT_EQ(c.elimination.layer, "ip1");
    kept.push_back(c.elimination.kept);
  }
  std::vector<int64_t> want;
  std::set<std::vector<int64_t>> seen;
  for (const double alpha : {0.3, 0.0}) {
    Model m = tiny_model();   // the same weights as base (seeded)
    SynapseSearchOptions so;
    so.correlation_threshold = alpha;
    so.align = 1;
    const LayerElimination e = eliminate_layer(m, "ip1", so);
    if (e.kept < e.K && seen.insert(e.retained).second) want.push_back(e.kept);
  }
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(kept, want);

  // A layer that is not optimised, or an empty sweep, is an error naming the layer.
  OptimizeOptions bad = o;
  bad.layers = {"conv1"};
  try {
    optimize(base, tr, val, bad);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'ip1'"), std::string::npos) << e.what();
  }
  bad = o;
  bad.layer_thresholds["ip1"].clear();
  EXPECT_THROW(optimize(base, tr, val, bad), Error);
}

TEST(SveOptimize, JointFineTuneTrainsEveryLayerAndLeavesTheCandidatesComposable) {
  const Dataset tr = synthetic(320, 11), val = synthetic(160, 12);
  Model base = tiny_model();
  TrainConfig tc;
  tc.epochs = 3;
  tc.batch = 32;
  tc.lr = 0.05;
  tc.progress = false;
  train(base, tr, nullptr, tc);
  OptimizeOptions o;
  o.thresholds = {0.3};
  o.align = 1;
  o.layers = {"ip1"};
  o.finetune.epochs = 1;
  o.finetune.batch = 32;
  o.time_batch = 4;
  o.time_iterations = 2;
  Optimization opt = optimize(base, tr, val, o);
  ASSERT_EQ(opt.candidates.size(), 1u);
  const std::map<std::string, int> choice{{"ip1", 0}};
  Model composed_before = compose(opt, choice);

  // 0 epochs: exactly the composed model.
  TrainConfig ft = tc;
  ft.epochs = 0;
  Model same = finetune_configuration(opt, choice, tr, ft);
  const Tensor x = val.images;
  {
    Model c = compose(opt, choice);
    const Tensor a = c.forward(x).clone(), b = same.forward(x).clone();
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a[i], b[i]);
  }
  // 1 epoch: every layer's weights move (not only the eliminated one), the retained index and
  // the truncated shape stay, and the stored candidate and base are untouched.
  ft.epochs = 1;
  ft.lr = 0.01;
  Model tuned = finetune_configuration(opt, choice, tr, ft);
  for (const char* name : {"conv1", "ip1", "ip2"}) {
    const Tensor& w0 = composed_before.nodes()[composed_before.find(name)].layer->param("weight")->value;
    const Tensor& w1 = tuned.nodes()[tuned.find(name)].layer->param("weight")->value;
    ASSERT_EQ(w0.shape(), w1.shape()) << name;
    double diff = 0;
    for (int64_t i = 0; i < w0.numel(); ++i) diff += std::fabs(w0[i] - w1[i]);
    EXPECT_GT(diff, 0) << name << " was not trained";
  }
  const Layer& ip1 = *tuned.nodes()[tuned.find("ip1")].layer;
  EXPECT_EQ(ip1.attrs().get_ints("retained"), opt.candidates[0].elimination.retained);
  {
    Model c = compose(opt, choice);   // the stored candidate and base did not move
    const Tensor a = c.forward(x).clone(), b = composed_before.forward(x).clone();
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a[i], b[i]);
  }

  // refine_frontier: every point within the loss (the dense one included, as the control),
  // each refined accuracy evaluated; select_refined picks the fastest within a loss.
  std::vector<std::string> log;
  const std::vector<RefinedPoint> r =
      refine_frontier(opt, tr, val, ft, 100.0, [&](const std::string& s) { log.push_back(s); });
  ASSERT_EQ(r.size(), opt.frontier.size());
  EXPECT_EQ(log.size(), r.size());
  for (const RefinedPoint& p : r) {
    EXPECT_EQ(p.accuracy, evaluate(const_cast<Model&>(p.model), val, 256, false).top1);
    EXPECT_EQ(p.accuracy_before, opt.frontier[p.point].accuracy);
  }
  const int any = select_refined(opt, r, 0.0, 100.0);
  ASSERT_GE(any, 0);
  for (const RefinedPoint& p : r) EXPECT_LE(opt.frontier[r[any].point].ms, opt.frontier[p.point].ms);
  EXPECT_EQ(select_refined(opt, r, 2.0, 0.0), -1);   // nothing is above 200%
  // Measured times: one per refined point after the base's, all positive; the selection by them
  // is the fastest by them.
  std::vector<RefinedPoint> rr;
  for (const RefinedPoint& p : r) rr.push_back({p.point, p.accuracy_before, p.accuracy, compose(opt, opt.frontier[p.point].choice)});
  const std::vector<double> ms = time_refined(opt, rr, 4, 3, 1);
  ASSERT_EQ(ms.size(), rr.size() + 1);
  for (double t : ms) EXPECT_GT(t, 0);
  const int k = select_refined(opt, rr, 0.0, 100.0, ms);
  ASSERT_GE(k, 0);
  for (size_t i = 0; i < rr.size(); ++i) EXPECT_LE(ms[1 + k], ms[1 + i]);
  EXPECT_THROW(select_refined(opt, rr, 0.0, 100.0, {1.0}), Error);
}

TEST(SveOptimize, DistillationWithWeightZeroIsPlainTraining) {
  const Dataset tr = synthetic(192, 21);
  TrainConfig tc;
  tc.epochs = 2;
  tc.batch = 32;
  tc.lr = 0.05;
  tc.progress = false;
  Model a = tiny_model(), b = tiny_model(), teacher = tiny_model();
  teacher.init_params(9);
  train(a, tr, nullptr, tc);
  train_distilled(b, teacher, tr, tc, Distillation{0.0, 4.0});
  for (const char* name : {"conv1", "ip1", "ip2"}) {
    const Tensor& wa = a.nodes()[a.find(name)].layer->param("weight")->value;
    const Tensor& wb = b.nodes()[b.find(name)].layer->param("weight")->value;
    ASSERT_EQ(wa.shape(), wb.shape());
    for (int64_t i = 0; i < wa.numel(); ++i) ASSERT_EQ(wa[i], wb[i]) << name << " " << i;
  }
  EXPECT_THROW(train_distilled(b, teacher, tr, tc, Distillation{1.5, 4.0}), Error);
  EXPECT_THROW(train_distilled(b, teacher, tr, tc, Distillation{0.5, 0.0}), Error);
}

TEST(SveOptimize, DistillationFollowsTheTeacherNotTheLabels) {
  // The teacher learns shifted labels (class c -> c + 1 mod 4); a student distilled from it with
  // weight 1 never sees a true label's gradient, so it must predict what the teacher predicts.
  const Dataset tr = synthetic(320, 31), val = synthetic(160, 32);
  Dataset shifted = tr;
  for (int32_t& y : shifted.labels) y = (y + 1) % 4;
  TrainConfig tc;
  tc.epochs = 4;
  tc.batch = 32;
  tc.lr = 0.05;
  tc.progress = false;
  Model teacher = tiny_model();
  train(teacher, shifted, nullptr, tc);
  const Tensor tv = teacher.forward(val.images).clone();
  auto argmax = [](const Tensor& t, int64_t i) {
    const float* r = t.data() + i * t.dim(1);
    return static_cast<int32_t>(std::max_element(r, r + t.dim(1)) - r);
  };
  int64_t teacher_shifted = 0;
  for (int64_t i = 0; i < val.images.dim(0); ++i) teacher_shifted += argmax(tv, i) == (val.labels[i] + 1) % 4;
  ASSERT_GT(teacher_shifted, 150) << "the teacher did not learn the shifted labels";

  Model student = tiny_model();
  student.init_params(5);
  train_distilled(student, teacher, tr, tc, Distillation{1.0, 2.0});
  const Tensor sv = student.forward(val.images).clone();
  int64_t agree = 0, true_label = 0;
  for (int64_t i = 0; i < val.images.dim(0); ++i) {
    agree += argmax(sv, i) == argmax(tv, i);
    true_label += argmax(sv, i) == val.labels[i];
  }
  EXPECT_GT(agree, 150);
  EXPECT_LT(true_label, 10);
}

// eliminate_evenly: the fixed elimination the GPU benchmarks and tests use. CaffeNet's conv2
// (2 groups of 128 x 1200): 600 rows wanted, 608 kept per group (a multiple of 16), rows
// floor(p * 1200 / 608) in both groups, weights K/K' times the original columns.
TEST(SveRuntimeConv, EliminateEvenlyKeepsSpreadAlignedRowsScaled) {
  Model m = build_zoo("caffenet");
  m.init_params(3);
  const int idx = m.find("conv2");
  const Tensor w = m.nodes()[static_cast<size_t>(idx)].layer->param("weight")->value;
  const int64_t O = w.dim(0), K = w.numel() / O;
  ASSERT_EQ(K, 1200);
  eliminate_evenly(m, "conv2", 0.5, 16);
  Layer& l = *m.nodes()[static_cast<size_t>(idx)].layer;
  const std::vector<int64_t> r = l.attrs().get_ints("retained");
  ASSERT_EQ(r.size(), 2u * 608u);
  const Tensor& wt = l.param("weight")->value;
  ASSERT_EQ(wt.shape(), (Shape{O, 608}));
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t p = 0; p < 608; ++p) {
      ASSERT_EQ(r[static_cast<size_t>(g * 608 + p)], p * 1200 / 608);
      if (p > 0) {
        ASSERT_GT(r[static_cast<size_t>(g * 608 + p)], r[static_cast<size_t>(g * 608 + p - 1)]);
      }
    }
  for (int64_t o : {int64_t{0}, int64_t{127}, int64_t{128}, O - 1})
    for (int64_t p : {int64_t{0}, int64_t{301}, int64_t{607}})
      EXPECT_FLOAT_EQ(wt[o * 608 + p], w[o * K + p * 1200 / 608] * (1200.0f / 608.0f));
  // The model still runs (shapes consistent), and bad requests name the layer.
  Tensor x({1, 3, 227, 227});
  EXPECT_EQ(m.forward(x).shape(), (Shape{1, 1000}));
  EXPECT_THROW(eliminate_evenly(m, "conv2"), Error);   // already eliminated
  EXPECT_THROW(eliminate_evenly(m, "pool1"), Error);
  EXPECT_THROW(eliminate_evenly(m, "conv3", 0.0), Error);
}
