// Layers (src/ops): forward against direct formulas, backward against central finite differences,
// shape inference and its errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/model.h"
#include "deftnn/rng.h"
#include "deftnn/tensor.h"
#include "conv_ref.h"

using namespace deftnn;
using deftnn::test::ConvCase;
using deftnn::test::conv_attrs;
using deftnn::test::conv_ref;

namespace {

Tensor rand_tensor(const Shape& s, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(lo, hi);
  return t;
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message '" << msg << "' lacks '" << p << "'";
    return;
  }
  ADD_FAILURE() << "expected deftnn::Error containing '" << (parts.empty() ? "" : parts[0]) << "'";
}

std::vector<Shape> shapes_of(const std::vector<Tensor>& ts) {
  std::vector<Shape> s;
  for (const auto& t : ts) s.push_back(t.shape());
  return s;
}

std::vector<const Tensor*> ptrs(const std::vector<Tensor>& ts) {
  std::vector<const Tensor*> p;
  for (const auto& t : ts) p.push_back(&t);
  return p;
}

Tensor run(Layer& l, const std::vector<Tensor>& in, bool training = false, Rng* rng = nullptr) {
  Shape os = l.infer(shapes_of(in));
  Tensor out;
  RunContext ctx{training, rng};
  l.forward(ptrs(in), out, ctx);
  EXPECT_EQ(out.shape(), os);
  return out;
}

void expect_near_all(const Tensor& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(want[i]))) << what << " at " << i;
}

// Gradient check: loss = sum(out * R) (accumulated in double from the fp32 outputs), analytic
// gradients from backward(dout = R) against central differences (f(x+e) - f(x-e)) / 2e for every
// input element and every trainable parameter element. A pair passes when
// |num - ana| <= atol + rtol * max(|num|, |ana|).
struct GradCheck {
  double eps = 1e-2, atol = 2e-3, rtol = 1e-2;
  std::function<void()> before_forward;   // e.g. re-seed the dropout generator
  bool training = true;
  Rng* rng = nullptr;
};

void grad_check(Layer& l, std::vector<Tensor> in, const GradCheck& gc, uint64_t seed = 99) {
  RunContext ctx{gc.training, gc.rng};
  const Shape os = l.infer(shapes_of(in));
  Rng r(seed);
  const Tensor R = rand_tensor(os, r);
  auto loss = [&]() {
    if (gc.before_forward) gc.before_forward();
    Tensor out;
    l.forward(ptrs(in), out, ctx);
    double s = 0.0;
    for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out[i]) * R[i];
    return s;
  };
  // Analytic.
  for (auto& p : l.params())
    if (p.trainable) p.grad.zero();
  if (gc.before_forward) gc.before_forward();
  Tensor out;
  l.forward(ptrs(in), out, ctx);
  std::vector<Tensor> din(in.size());
  std::vector<Tensor*> dinp;
  for (auto& d : din) dinp.push_back(&d);
  l.backward(ptrs(in), out, R, dinp, ctx);
  auto compare = [&](float* v, int64_t n, const Tensor& ana, const std::string& what) {
    ASSERT_EQ(ana.numel(), n) << what;
    for (int64_t i = 0; i < n; ++i) {
      const float keep = v[i];
      v[i] = keep + static_cast<float>(gc.eps);
      const double fp = loss();
      v[i] = keep - static_cast<float>(gc.eps);
      const double fm = loss();
      v[i] = keep;
      const double num = (fp - fm) / (2 * gc.eps), a = ana[i];
      ASSERT_LE(std::fabs(num - a), gc.atol + gc.rtol * std::max(std::fabs(num), std::fabs(a)))
          << l.type() << " " << what << "[" << i << "]: numeric " << num << " analytic " << a;
    }
  };
  for (size_t k = 0; k < in.size(); ++k)
    compare(in[k].data(), in[k].numel(), din[k], "input" + std::to_string(k));
  for (auto& p : l.params()) {
    if (!p.trainable) continue;
    const Tensor g = p.grad.clone();
    compare(p.value.data(), p.value.numel(), g, "param " + p.name);
  }
}

// ---------------------------------------------------------------------------------------------
// Convolution against a direct 7-loop reference (conv_ref.h).

TEST(OpsConv, ForwardMatchesDirectConvolution) {
  const std::vector<ConvCase> cases = {
      // N  C  H   W   O  kh kw sh sw pt pl pb pr dh dw G
      {1, 3, 7, 9, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},         // plain 3x3
      {3, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},         // stride 2, pad 1, batch 3
      {1, 4, 11, 13, 6, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 2},       // pad 2, groups 2
      {1, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4},        // groups 4, one image (2 per thread)
      {1, 6, 9, 8, 9, 3, 3, 2, 1, 1, 0, 1, 0, 1, 1, 3},         // groups 3, one image
      {3, 4, 13, 11, 4, 3, 3, 4, 4, 1, 1, 1, 1, 1, 1, 2},       // stride 4, groups 2
      {1, 3, 11, 12, 4, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},       // dilation 2
      {3, 5, 7, 9, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},         // 1x1 (no im2col)
      {1, 4, 7, 5, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2},         // 1x1 grouped
      {1, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1},         // 1x1 stride 2 (needs im2col)
      {1, 3, 35, 35, 4, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1},     // AlexNet conv1 style, k11 s4
      {3, 2, 8, 7, 3, 3, 2, 2, 1, 0, 1, 2, 0, 1, 1, 1},         // asymmetric pads, rect kernel
      {1, 2, 6, 6, 2, 3, 3, 1, 2, 1, 0, 0, 1, 1, 2, 1},         // asymmetric pads, dilation w
  };
  Rng rng(1);
  for (size_t k = 0; k < cases.size(); ++k) {
    for (bool bias : {true, false}) {
      ConvCase c = cases[k];
      c.bias = bias;
      auto l = make_layer("conv", conv_attrs(c));
      Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
      l->infer({x.shape()});
      l->init_params(rng);
      if (bias)
        for (int64_t i = 0; i < c.O; ++i) l->param("bias")->value[i] = rng.uniform(-1.0f, 1.0f);
      else
        EXPECT_EQ(l->param("bias"), nullptr);
      Tensor y = run(*l, {x});
      Tensor want = conv_ref(c, x, l->param("weight")->value,
                             bias ? l->param("bias")->value.data() : nullptr);
      ASSERT_EQ(y.shape(), want.shape()) << "case " << k;
      for (int64_t i = 0; i < y.numel(); ++i)
        ASSERT_NEAR(y[i], want[i], 1e-4f * std::max(1.0f, std::fabs(want[i])))
            << "case " << k << " bias " << bias << " at " << i;
    }
  }
}

TEST(OpsConv, ParamsShapesFlopsAndFillers) {
  auto l = make_layer("conv", Attrs().set("out_channels", 6).set("kernel", 5).set("groups", 2));
  Shape os = l->infer({{2, 4, 12, 12}});
  EXPECT_EQ(os, (Shape{2, 6, 8, 8}));
  ASSERT_NE(l->param("weight"), nullptr);
  EXPECT_EQ(l->param("weight")->value.shape(), (Shape{6, 2, 5, 5}));
  EXPECT_EQ(l->param("weight")->grad.shape(), (Shape{6, 2, 5, 5}));
  ASSERT_NE(l->param("bias"), nullptr);
  EXPECT_EQ(l->param("bias")->lr_mult, 2.0f);
  EXPECT_EQ(l->param("bias")->decay_mult, 0.0f);
  EXPECT_EQ(l->flops({{2, 4, 12, 12}}, os), 2LL * 2 * 6 * 64 * (2 * 25));
  // Xavier: uniform within sqrt(3 / fan_in), fan_in = 2 * 5 * 5.
  Rng rng(3);
  l->init_params(rng);
  const float a = std::sqrt(3.0f / 50.0f);
  const Tensor& w = l->param("weight")->value;
  float mx = 0;
  for (int64_t i = 0; i < w.numel(); ++i) mx = std::max(mx, std::fabs(w[i]));
  EXPECT_LE(mx, a);
  EXPECT_GT(mx, 0.8f * a);
  // Gaussian with bias_value; msra std sqrt(2/fan_in).
  auto g = make_layer("conv", Attrs().set("out_channels", 64).set("kernel", 3)
                                   .set("weight_filler", "gaussian").set("weight_std", 0.5)
                                   .set("bias_value", 0.25));
  g->infer({{1, 16, 5, 5}});
  g->init_params(rng);
  double ss = 0;
  const Tensor& gw = g->param("weight")->value;
  for (int64_t i = 0; i < gw.numel(); ++i) ss += gw[i] * gw[i];
  EXPECT_NEAR(std::sqrt(ss / gw.numel()), 0.5, 0.03);
  EXPECT_EQ(g->param("bias")->value[7], 0.25f);
  auto m = make_layer("conv", Attrs().set("out_channels", 64).set("kernel", 3).set("weight_filler", "msra"));
  m->infer({{1, 16, 5, 5}});
  m->init_params(rng);
  ss = 0;
  const Tensor& mw = m->param("weight")->value;
  for (int64_t i = 0; i < mw.numel(); ++i) ss += mw[i] * mw[i];
  EXPECT_NEAR(std::sqrt(ss / mw.numel()), std::sqrt(2.0 / 144), 0.01);
}

TEST(OpsConv, BackwardMatchesFiniteDifferences) {
  const std::vector<ConvCase> cases = {
      {2, 4, 6, 5, 4, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 2},   // groups, stride, pad; batch-parallel
      {1, 3, 5, 6, 2, 3, 2, 1, 2, 0, 1, 1, 0, 1, 1, 1},   // asymmetric pads, sequential
      {2, 2, 7, 7, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 1},   // dilation 2
      {3, 3, 4, 5, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},   // 1x1
  };
  Rng rng(5);
  for (const auto& c : cases) {
    auto l = make_layer("conv", conv_attrs(c));
    l->infer({{c.N, c.C, c.H, c.W}});
    l->init_params(rng);
    for (int64_t i = 0; i < c.O; ++i) l->param("bias")->value[i] = rng.uniform(-1.0f, 1.0f);
    grad_check(*l, {rand_tensor({c.N, c.C, c.H, c.W}, rng)}, GradCheck{});
  }
}

TEST(OpsConv, BackwardAccumulatesAndSkipsUnneededInputGradient) {
  Rng rng(6);
  auto l = make_layer("conv", Attrs().set("out_channels", 3).set("kernel", 3).set("pad", 1));
  Tensor x = rand_tensor({4, 2, 6, 6}, rng);
  Tensor y = run(*l, {x});
  l->init_params(rng);
  y = run(*l, {x});
  Tensor dy = rand_tensor(y.shape(), rng);
  RunContext ctx{true, nullptr};
  Tensor dx;
  l->backward({&x}, y, dy, {&dx}, ctx);
  const Tensor g1 = l->param("weight")->grad.clone(), b1 = l->param("bias")->grad.clone();
  l->backward({&x}, y, dy, {nullptr}, ctx);   // no dx wanted; params accumulate
  const Tensor& g2 = l->param("weight")->grad;
  for (int64_t i = 0; i < g1.numel(); ++i) ASSERT_NEAR(g2[i], 2 * g1[i], 1e-5f * (1 + std::fabs(g1[i])));
  for (int64_t i = 0; i < b1.numel(); ++i)
    ASSERT_NEAR(l->param("bias")->grad[i], 2 * b1[i], 1e-5f * (1 + std::fabs(b1[i])));
}

TEST(OpsConv, BatchedChunksAndThreadsMatchPerImage) {
  // Batches are split into chunks of images (side by side in one GEMM) and over threads; every
  // split must give the per-image results, and dW must be the sum of the per-image dWs.
  Rng rng(21);
  // The third case: 16 images of 13x13 (CaffeNet conv3..5 at batch 16) split into balanced
  // chunks of several images (4 x 4 on two threads, 3 x 5-6 on three).
  for (const ConvCase& c : {ConvCase{7, 4, 9, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
                            ConvCase{5, 6, 6, 6, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},
                            ConvCase{16, 3, 13, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}}) {
    auto l = make_layer("conv", conv_attrs(c));
    Tensor x = rand_tensor({c.N, c.C, c.H, c.W}, rng);
    l->infer({x.shape()});
    l->init_params(rng);
    for (int64_t i = 0; i < c.O; ++i) l->param("bias")->value[i] = rng.uniform(-1.0f, 1.0f);
    const int64_t in1 = c.C * c.H * c.W;
    Tensor y1, dw1(l->param("weight")->value.shape()), dx1(x.shape());
    Tensor dy;
    RunContext ctx{true, nullptr};
    // Per image (batch 1).
    for (int64_t n = 0; n < c.N; ++n) {
      Tensor xn({1, c.C, c.H, c.W});
      std::copy(x.data() + n * in1, x.data() + (n + 1) * in1, xn.data());
      Tensor yn, dxn;
      l->forward({&xn}, yn, ctx);
      if (n == 0) {
        y1 = Tensor({c.N, yn.dim(1), yn.dim(2), yn.dim(3)});
        dy = rand_tensor(y1.shape(), rng);
      }
      const int64_t on = yn.numel();
      std::copy(yn.data(), yn.data() + on, y1.data() + n * on);
      Tensor dyn({1, yn.dim(1), yn.dim(2), yn.dim(3)});
      std::copy(dy.data() + n * on, dy.data() + (n + 1) * on, dyn.data());
      l->param("weight")->grad.zero();
      l->backward({&xn}, yn, dyn, {&dxn}, ctx);
      std::copy(dxn.data(), dxn.data() + in1, dx1.data() + n * in1);
      for (int64_t i = 0; i < dw1.numel(); ++i) dw1[i] += l->param("weight")->grad[i];
    }
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      Tensor y, dx;
      l->forward({&x}, y, ctx);
      l->param("weight")->grad.zero();
      l->backward({&x}, y, dy, {&dx}, ctx);
      for (int64_t i = 0; i < y.numel(); ++i)
        ASSERT_NEAR(y[i], y1[i], 1e-5f * (1 + std::fabs(y1[i]))) << "threads " << threads;
      for (int64_t i = 0; i < dx.numel(); ++i)
        ASSERT_NEAR(dx[i], dx1[i], 1e-5f * (1 + std::fabs(dx1[i]))) << "threads " << threads;
      const Tensor& dw = l->param("weight")->grad;
      for (int64_t i = 0; i < dw.numel(); ++i)
        ASSERT_NEAR(dw[i], dw1[i], 1e-4f * (1 + std::fabs(dw1[i]))) << "threads " << threads;
    }
    omp_set_num_threads(saved);
  }
}

// ---------------------------------------------------------------------------------------------
// Fully connected.

TEST(OpsFc, ForwardMatchesFormulaAndFlattensInput) {
  Rng rng(7);
  auto l = make_layer("fc", Attrs().set("out_features", 5));
  Tensor x = rand_tensor({3, 2, 2, 3}, rng);   // I = 12
  EXPECT_EQ(l->infer({x.shape()}), (Shape{3, 5}));
  l->init_params(rng);
  for (int64_t o = 0; o < 5; ++o) l->param("bias")->value[o] = 0.1f * o;
  Tensor y = run(*l, {x});
  const Tensor& w = l->param("weight")->value;
  EXPECT_EQ(w.shape(), (Shape{5, 12}));
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t o = 0; o < 5; ++o) {
      double s = 0.1 * o;
      for (int64_t i = 0; i < 12; ++i) s += static_cast<double>(x[n * 12 + i]) * w[o * 12 + i];
      EXPECT_NEAR(y[n * 5 + o], s, 1e-5);
    }
  EXPECT_EQ(l->flops({x.shape()}, {3, 5}), 2 * 3 * 5 * 12);
}

TEST(OpsFc, BackwardMatchesFiniteDifferences) {
  Rng rng(8);
  for (int bias : {1, 0}) {
    auto l = make_layer("fc", Attrs().set("out_features", 4).set("bias", bias));
    l->infer({{3, 2, 3}});
    l->init_params(rng);
    grad_check(*l, {rand_tensor({3, 2, 3}, rng)}, GradCheck{});
  }
}

// ---------------------------------------------------------------------------------------------
// ReLU.

TEST(OpsRelu, ForwardAndBackward) {
  auto l = make_layer("relu", Attrs());
  Tensor x = Tensor::from({1, 4}, {-2.0f, -0.5f, 0.5f, 3.0f});
  expect_near_all(run(*l, {x}), {0, 0, 0.5, 3}, 0, "relu");
  auto leaky = make_layer("relu", Attrs().set("negative_slope", 0.1));
  expect_near_all(run(*leaky, {x}), {-0.2, -0.05, 0.5, 3}, 1e-7, "leaky");
  // Gradient check away from the kink at 0.
  Rng rng(9);
  Tensor xr = rand_tensor({2, 3, 4, 5}, rng);
  for (int64_t i = 0; i < xr.numel(); ++i) xr[i] += xr[i] >= 0 ? 0.1f : -0.1f;
  grad_check(*l, {xr}, GradCheck{});
  grad_check(*leaky, {xr}, GradCheck{});
}

// ---------------------------------------------------------------------------------------------
// Pooling.

TEST(OpsPool, CaffeCeilModeOutputSizes) {
  auto pool_hw = [](int64_t H, int64_t k, int64_t s, int64_t p, int ceil) {
    auto l = make_layer("maxpool", Attrs().set("kernel", k).set("stride", s).set("pad", p).set("ceil_mode", ceil));
    return l->infer({{1, 1, H, H}})[2];
  };
  EXPECT_EQ(pool_hw(55, 3, 2, 0, 1), 27);    // AlexNet pool1
  EXPECT_EQ(pool_hw(27, 3, 2, 0, 1), 13);    // AlexNet pool2
  EXPECT_EQ(pool_hw(13, 3, 2, 0, 1), 6);     // AlexNet pool5
  EXPECT_EQ(pool_hw(32, 3, 2, 0, 1), 16);    // cifar10_full pool1: ceil(29 / 2) + 1
  EXPECT_EQ(pool_hw(16, 3, 2, 0, 1), 8);     // cifar10_full pool2
  EXPECT_EQ(pool_hw(32, 3, 2, 0, 0), 15);    // floor mode
  EXPECT_EQ(pool_hw(24, 2, 2, 0, 1), 12);    // LeNet
  EXPECT_EQ(pool_hw(112, 3, 2, 0, 1), 56);   // GoogLeNet / ResNet pool1 in Caffe
  EXPECT_EQ(pool_hw(112, 3, 2, 1, 1), 57);   // padded: ceil(111 / 2) + 1, last start 112 < 113
  // Last window would start in the right pad: ceil((5 + 2 - 2) / 2) + 1 = 4, (4-1)*2 >= 5+1 -> 3.
  EXPECT_EQ(pool_hw(5, 2, 2, 1, 1), 3);
  EXPECT_EQ(pool_hw(5, 2, 2, 1, 0), 3);
  auto g = make_layer("avgpool", Attrs().set("global", 1));
  EXPECT_EQ(g->infer({{2, 3, 7, 5}}), (Shape{2, 3, 1, 1}));
}

TEST(OpsPool, MaxAndAvgHandComputed) {
  // 3x3 plane 0..8, kernel 2 stride 2, ceil mode -> 2x2 with clipped edge windows.
  std::vector<float> v(9);
  std::iota(v.begin(), v.end(), 0.0f);
  Tensor x = Tensor::from({1, 1, 3, 3}, v);
  auto mp = make_layer("maxpool", Attrs().set("kernel", 2).set("stride", 2));
  expect_near_all(run(*mp, {x}), {4, 5, 7, 8}, 0, "maxpool");
  auto ap = make_layer("avgpool", Attrs().set("kernel", 2).set("stride", 2));
  expect_near_all(run(*ap, {x}), {2, 3.5, 6.5, 8}, 1e-6, "avgpool");
  // 4x4 0..15, k2 s2.
  std::vector<float> v16(16);
  std::iota(v16.begin(), v16.end(), 0.0f);
  Tensor x4 = Tensor::from({1, 1, 4, 4}, v16);
  expect_near_all(run(*mp, {x4}), {5, 7, 13, 15}, 0, "maxpool 4x4");
  expect_near_all(run(*ap, {x4}), {2.5, 4.5, 10.5, 12.5}, 1e-6, "avgpool 4x4");
  // Negative inputs with padding: padded cells never win a max.
  Tensor neg = Tensor::from({1, 1, 2, 2}, {-4, -3, -2, -1});
  auto mpp = make_layer("maxpool", Attrs().set("kernel", 2).set("stride", 1).set("pad", 1));
  expect_near_all(run(*mpp, {neg}), {-4, -3, -3, -2, -1, -1, -2, -1, -1}, 0, "maxpool pad");
}

// Max pooling against a naive per-window maximum (padding never wins) on random planes of odd
// sizes and several windows, in inference (the separable path) and training (argmax mask path).
TEST(OpsPool, MaxMatchesNaiveWindowsInferenceAndTraining) {
  Rng rng(31);
  struct Case { int64_t H, W, k, s, pad; };
  for (const Case& c : {Case{55, 55, 3, 2, 0}, Case{27, 27, 3, 2, 0}, Case{13, 13, 3, 2, 0},
                        Case{17, 7, 3, 1, 1}, Case{1, 1, 3, 2, 1}, Case{255, 9, 5, 3, 2},
                        Case{8, 8, 2, 2, 0}, Case{7, 17, 4, 1, 0}, Case{32, 32, 3, 2, 0},
                        Case{12, 11, 3, 2, 1}, Case{2, 5, 3, 2, 1}}) {
    auto l = make_layer("maxpool", Attrs().set("kernel", c.k).set("stride", c.s).set("pad", c.pad));
    Tensor x = rand_tensor({2, 3, c.H, c.W}, rng);
    Tensor yi = run(*l, {x}, false);
    Tensor yt = run(*l, {x}, true);
    ASSERT_EQ(yi.shape(), yt.shape());
    const int64_t OH = yi.dim(2), OW = yi.dim(3);
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t h = oh * c.s - c.pad; h < oh * c.s - c.pad + c.k; ++h)
            for (int64_t w = ow * c.s - c.pad; w < ow * c.s - c.pad + c.k; ++w)
              if (h >= 0 && h < c.H && w >= 0 && w < c.W) m = std::max(m, x[(p * c.H + h) * c.W + w]);
          const int64_t o = (p * OH + oh) * OW + ow;
          ASSERT_EQ(yi[o], m) << c.H << "x" << c.W << " k" << c.k << " s" << c.s << " at " << oh << "," << ow;
          ASSERT_EQ(yt[o], m) << "training path";
        }
  }
}

// Average pooling against a naive per-window mean (Caffe's divisor: the window clipped to the
// padded image; ONNX count_include_pad = 0: the real pixels) on random planes of odd sizes.
TEST(OpsPool, AvgMatchesNaiveWindows) {
  Rng rng(32);
  struct Case { int64_t H, W, k, s, pad; };
  for (const Case& c : {Case{32, 32, 3, 2, 0}, Case{16, 16, 3, 2, 0}, Case{13, 13, 3, 2, 1},
                        Case{17, 7, 3, 1, 1}, Case{1, 1, 3, 2, 1}, Case{9, 255, 5, 3, 2},
                        Case{8, 8, 2, 2, 0}, Case{7, 17, 4, 1, 0}})
    for (int64_t cip : {1, 0}) {
      auto l = make_layer("avgpool", Attrs().set("kernel", c.k).set("stride", c.s).set("pad", c.pad)
                                         .set("count_include_pad", cip));
      Tensor x = rand_tensor({2, 3, c.H, c.W}, rng);
      Tensor y = run(*l, {x});
      const int64_t OH = y.dim(2), OW = y.dim(3);
      for (int64_t p = 0; p < 6; ++p)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t hs = oh * c.s - c.pad, ws = ow * c.s - c.pad;
            const int64_t he = std::min(hs + c.k, c.H + c.pad), we = std::min(ws + c.k, c.W + c.pad);
            double sum = 0;
            int64_t real = 0;
            for (int64_t h = std::max<int64_t>(hs, 0); h < std::min(he, c.H); ++h)
              for (int64_t w = std::max<int64_t>(ws, 0); w < std::min(we, c.W); ++w, ++real)
                sum += x[(p * c.H + h) * c.W + w];
            const double want = sum / static_cast<double>(cip ? (he - hs) * (we - ws) : real);
            ASSERT_NEAR(y[(p * OH + oh) * OW + ow], want, 1e-5)
                << c.H << "x" << c.W << " k" << c.k << " s" << c.s << " p" << c.pad << " cip "
                << cip << " at " << oh << "," << ow;
          }
    }
}

TEST(OpsPool, AvgPaddingRuleCaffeVsOnnx) {
  // 3x3 plane 1..9, k3 s1 pad 1: corner window has 4 real pixels out of 9.
  std::vector<float> v(9);
  std::iota(v.begin(), v.end(), 1.0f);
  Tensor x = Tensor::from({1, 1, 3, 3}, v);
  auto caffe = make_layer("avgpool", Attrs().set("kernel", 3).set("pad", 1));
  auto onnx = make_layer("avgpool", Attrs().set("kernel", 3).set("pad", 1).set("count_include_pad", 0));
  Tensor yc = run(*caffe, {x}), yo = run(*onnx, {x});
  EXPECT_NEAR(yc[0], 12.0 / 9, 1e-6);
  EXPECT_NEAR(yo[0], 12.0 / 4, 1e-6);
  EXPECT_NEAR(yc[4], 5.0, 1e-6);
  EXPECT_NEAR(yo[4], 5.0, 1e-6);
  EXPECT_NEAR(yc[1], 21.0 / 9, 1e-6);
  EXPECT_NEAR(yo[1], 21.0 / 6, 1e-6);
  // Ceil mode: 4x4 ones, k3 s2 p1 -> 3x3. Caffe clips the window to [-p, H + p): the last
  // window covers rows/cols {3, 4(pad)} -> divisor 2 * 2 = 4 with one real pixel.
  Tensor ones({1, 1, 4, 4}, 1.0f);
  auto c2 = make_layer("avgpool", Attrs().set("kernel", 3).set("stride", 2).set("pad", 1));
  auto o2 = make_layer("avgpool", Attrs().set("kernel", 3).set("stride", 2).set("pad", 1).set("count_include_pad", 0));
  Tensor y2 = run(*c2, {ones}), z2 = run(*o2, {ones});
  ASSERT_EQ(y2.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_NEAR(y2[0], 4.0 / 9, 1e-6);
  EXPECT_NEAR(y2[8], 1.0 / 4, 1e-6);
  EXPECT_NEAR(y2[1], 6.0 / 9, 1e-6);
  for (int64_t i = 0; i < 9; ++i) EXPECT_NEAR(z2[i], 1.0, 1e-6);
}

TEST(OpsPool, GlobalPooling) {
  // Planes of 20, 1, 49 and 169 floats (vector tails); the last shape is big enough to run on
  // the thread team. Against double sums.
  for (const Shape& shape : {Shape{2, 3, 5, 4}, Shape{3, 7, 1, 1}, Shape{1, 9, 7, 7},
                             Shape{2, 200, 13, 13}}) {
    SCOPED_TRACE(shape_str(shape));
    Rng rng(10);
    Tensor x = rand_tensor(shape, rng);
    auto ga = make_layer("avgpool", Attrs().set("global", 1));
    auto gm = make_layer("maxpool", Attrs().set("global", 1));
    Tensor ya = run(*ga, {x}), ym = run(*gm, {x});
    const int64_t ip = shape[2] * shape[3], planes = shape[0] * shape[1];
    ASSERT_EQ(ya.shape(), (Shape{shape[0], shape[1], 1, 1}));
    for (int64_t p = 0; p < planes; ++p) {
      double s = 0;
      float m = -1e30f;
      for (int64_t i = 0; i < ip; ++i) {
        s += x[p * ip + i];
        m = std::max(m, x[p * ip + i]);
      }
      EXPECT_NEAR(ya[p], s / static_cast<double>(ip), 1e-6);
      EXPECT_EQ(ym[p], m);
    }
  }
}

TEST(OpsPool, MaxTiesGoToTheFirstPositionInTheWindow) {
  // Constant planes: every window ties; the gradient goes to the first (row-major) position of
  // each window, on the unrolled 2x2/s2 path, the general interior path and the clipped border.
  for (const Attrs& a : {Attrs().set("kernel", 2).set("stride", 2),
                         Attrs().set("kernel", 3).set("stride", 2)}) {
    auto l = make_layer("maxpool", a);
    Tensor x({1, 1, 5, 5}, 1.0f), y, dx;
    y = run(*l, {x}, true);
    Tensor dy(y.shape(), 1.0f);
    l->backward({&x}, y, dy, {&dx}, RunContext{true, nullptr});
    const int64_t s = 2;
    std::vector<double> want(25, 0.0);
    for (int64_t oh = 0; oh < y.dim(2); ++oh)
      for (int64_t ow = 0; ow < y.dim(3); ++ow) want[(oh * s) * 5 + ow * s] += 1.0;
    expect_near_all(dx, want, 0, "ties " + a.str());
  }
}

TEST(OpsPool, BackwardMatchesFiniteDifferences) {
  Rng rng(11);
  // Distinct inputs spaced more than 2 * eps apart: no ties, argmax stable under perturbation.
  auto distinct = [&](const Shape& s) {
    Tensor t(s);
    std::vector<int64_t> idx(t.numel());
    std::iota(idx.begin(), idx.end(), 0);
    for (int64_t i = t.numel() - 1; i > 0; --i) std::swap(idx[i], idx[rng.below(i + 1)]);
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = 0.05f * static_cast<float>(idx[i]) - 1.0f;
    return t;
  };
  const std::vector<Attrs> cfgs = {
      Attrs().set("kernel", 3).set("stride", 2),
      Attrs().set("kernel", 2).set("stride", 2).set("pad", 1),
      Attrs().set("kernel", 3).set("stride", 2).set("pad", 1).set("ceil_mode", 0),
      Attrs().set("kernel", std::vector<int64_t>{2, 3}).set("stride", std::vector<int64_t>{1, 2}),
      Attrs().set("global", 1),
  };
  GradCheck gc;
  gc.eps = 5e-3;
  for (const auto& a : cfgs) {
    auto mp = make_layer("maxpool", a);
    grad_check(*mp, {distinct({2, 2, 7, 6})}, gc);
    Attrs b = a;
    auto ap = make_layer("avgpool", b);
    grad_check(*ap, {distinct({2, 2, 7, 6})}, gc);
    b.set("count_include_pad", 0);
    auto ap0 = make_layer("avgpool", b);
    grad_check(*ap0, {distinct({1, 2, 7, 6})}, gc);
  }
  // Maxpool backward after an inference-mode forward recomputes the argmax.
  auto mp = make_layer("maxpool", Attrs().set("kernel", 2).set("stride", 2));
  GradCheck inf;
  inf.training = false;
  grad_check(*mp, {distinct({1, 2, 4, 4})}, inf);
}

// ---------------------------------------------------------------------------------------------
// LRN.

TEST(OpsLrn, ForwardMatchesFormula) {
  Rng rng(12);
  for (int64_t size : {5, 3, 4, 1}) {
    const double alpha = 0.3, beta = 0.75, k = 1.5;
    auto l = make_layer("lrn", Attrs().set("size", size).set("alpha", alpha).set("beta", beta).set("k", k));
    const int64_t N = 2, C = 7, S = 6;
    Tensor x = rand_tensor({N, C, 2, 3}, rng, -2.0f, 2.0f);
    Tensor y = run(*l, {x});
    const int64_t pre = (size - 1) / 2;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t s = 0; s < S; ++s) {
          double sum = 0;
          for (int64_t cc = c - pre; cc < c - pre + size; ++cc)
            if (cc >= 0 && cc < C) sum += std::pow(x[(n * C + cc) * S + s], 2.0);
          const double want = x[(n * C + c) * S + s] * std::pow(k + alpha / size * sum, -beta);
          ASSERT_NEAR(y[(n * C + c) * S + s], want, 1e-5 * std::max(1.0, std::fabs(want)))
              << "size " << size;
        }
  }
  // Default AlexNet parameters: alpha 1e-4, beta 0.75, k 1 -> close to identity for small x.
  auto d = make_layer("lrn", Attrs());
  Tensor x = Tensor::from({1, 2, 1, 1}, {1.0f, 2.0f});
  Tensor y = run(*d, {x});
  EXPECT_NEAR(y[0], 1.0 * std::pow(1 + 1e-4 / 5 * 5, -0.75), 1e-6);
}

TEST(OpsLrn, BackwardMatchesFiniteDifferences) {
  Rng rng(13);
  GradCheck gc;
  gc.eps = 2e-3;
  for (int64_t size : {5, 4, 3}) {
    auto l = make_layer("lrn", Attrs().set("size", size).set("alpha", 0.5).set("beta", 0.75).set("k", 1.0));
    grad_check(*l, {rand_tensor({2, 6, 3, 2}, rng)}, gc);
    auto l2 = make_layer("lrn", Attrs().set("size", size).set("alpha", 0.2).set("beta", 0.6).set("k", 2.0));
    grad_check(*l2, {rand_tensor({1, 5, 2, 2}, rng)}, gc);
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout.

TEST(OpsDropout, FixedMaskScalingAndBackward) {
  const double ratio = 0.3;
  auto l = make_layer("dropout", Attrs().set("ratio", ratio));
  Rng data(14);
  Tensor x = rand_tensor({4, 5, 6, 7}, data);
  Rng rng(77);
  Tensor y = run(*l, {x}, true, &rng);
  // The same seed reproduces the mask: keep when uniform() >= ratio, scale 1 / (1 - ratio).
  Rng same(77);
  const float keep = static_cast<float>(1.0 / (1.0 - ratio));
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool k = same.uniform() >= ratio;
    kept += k;
    ASSERT_EQ(y[i], k ? x[i] * keep : 0.0f) << i;
  }
  EXPECT_NEAR(static_cast<double>(kept) / x.numel(), 1 - ratio, 0.05);
  // Backward with the same mask.
  Tensor dy = rand_tensor(x.shape(), data), dx;
  l->backward({&x}, y, dy, {&dx}, RunContext{true, &rng});
  Rng again(77);
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_EQ(dx[i], again.uniform() >= ratio ? dy[i] * keep : 0.0f);
  // Finite differences with the generator re-seeded before every forward (fixed mask).
  Rng fd(5);
  GradCheck gc;
  gc.rng = &fd;
  gc.before_forward = [&] { fd.reseed(5); };
  grad_check(*l, {rand_tensor({2, 3, 4}, data)}, gc);
  // Inference: identity; training without a generator: an error.
  Tensor yi = run(*l, {x}, false, nullptr);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(yi[i], x[i]);
  expect_error([&] { run(*l, {x}, true, nullptr); }, {"dropout", "rng"});
}

// ---------------------------------------------------------------------------------------------
// Softmax.

TEST(OpsSoftmax, ForwardMatchesFormulaAndIsStable) {
  Rng rng(15);
  Tensor x = rand_tensor({2, 5, 3}, rng, -3.0f, 3.0f);
  x[0] = 1000.0f;   // would overflow exp() without subtracting the maximum
  for (int64_t axis : {1, -1, 0}) {
    auto l = make_layer("softmax", Attrs().set("axis", axis));
    Tensor y = run(*l, {x});
    const Shape& s = x.shape();
    const int64_t a = axis < 0 ? axis + 3 : axis;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < a; ++d) outer *= s[d];
    for (int64_t d = a + 1; d < 3; ++d) inner *= s[d];
    const int64_t dim = s[a];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        double m = -1e300, sum = 0;
        for (int64_t c = 0; c < dim; ++c) m = std::max(m, (double)x[(o * dim + c) * inner + i]);
        for (int64_t c = 0; c < dim; ++c) sum += std::exp(x[(o * dim + c) * inner + i] - m);
        for (int64_t c = 0; c < dim; ++c) {
          const int64_t at = (o * dim + c) * inner + i;
          ASSERT_NEAR(y[at], std::exp(x[at] - m) / sum, 1e-6) << "axis " << axis;
          ASSERT_TRUE(std::isfinite(y[at]));
        }
      }
  }
}

TEST(OpsSoftmax, BackwardMatchesFiniteDifferences) {
  Rng rng(16);
  GradCheck gc;
  gc.eps = 2e-3;
  auto l = make_layer("softmax", Attrs());
  grad_check(*l, {rand_tensor({3, 6}, rng, -2.0f, 2.0f)}, gc);
  auto l2 = make_layer("softmax", Attrs().set("axis", 1));
  grad_check(*l2, {rand_tensor({2, 4, 3}, rng, -2.0f, 2.0f)}, gc);
}

// ---------------------------------------------------------------------------------------------
// Batchnorm, flatten, concat, add.

TEST(OpsBatchnorm, InferenceFormAndBackward) {
  auto l = make_layer("batchnorm", Attrs().set("eps", 1e-3));
  EXPECT_EQ(l->infer({{2, 3, 2, 2}}), (Shape{2, 3, 2, 2}));
  ASSERT_EQ(l->params().size(), 4u);
  for (const char* n : {"mean", "var", "scale", "shift"}) {
    ASSERT_NE(l->param(n), nullptr) << n;
    EXPECT_FALSE(l->param(n)->trainable);
    EXPECT_EQ(l->param(n)->value.shape(), (Shape{3}));
  }
  EXPECT_EQ(l->param("var")->value[1], 1.0f);
  EXPECT_EQ(l->param("scale")->value[2], 1.0f);
  EXPECT_EQ(l->param("mean")->value[0], 0.0f);
  const float mean[3] = {0.5f, -1.0f, 2.0f}, var[3] = {4.0f, 0.25f, 1.0f}, sc[3] = {2.0f, 1.0f, -1.0f},
              sh[3] = {0.0f, 1.0f, 3.0f};
  for (int c = 0; c < 3; ++c) {
    l->param("mean")->value[c] = mean[c];
    l->param("var")->value[c] = var[c];
    l->param("scale")->value[c] = sc[c];
    l->param("shift")->value[c] = sh[c];
  }
  Rng rng(17);
  Tensor x = rand_tensor({2, 3, 2, 2}, rng);
  Tensor y = run(*l, {x});
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / 4) % 3;
    EXPECT_NEAR(y[i], (x[i] - mean[c]) / std::sqrt(var[c] + 1e-3) * sc[c] + sh[c], 1e-5);
  }
  grad_check(*l, {x}, GradCheck{});
  // [N, C] inputs work too.
  auto l2 = make_layer("batchnorm", Attrs());
  EXPECT_EQ(l2->infer({{4, 6}}), (Shape{4, 6}));
}

TEST(OpsFlatten, ShapesAndValues) {
  Rng rng(18);
  Tensor x = rand_tensor({2, 3, 4, 5}, rng);
  auto f1 = make_layer("flatten", Attrs());
  Tensor y = run(*f1, {x});
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(y[i], x[i]);
  EXPECT_EQ(make_layer("flatten", Attrs().set("axis", 0))->infer({x.shape()}), (Shape{1, 120}));
  EXPECT_EQ(make_layer("flatten", Attrs().set("axis", 2))->infer({x.shape()}), (Shape{6, 20}));
  EXPECT_EQ(make_layer("flatten", Attrs().set("axis", -1))->infer({x.shape()}), (Shape{24, 5}));
  grad_check(*f1, {rand_tensor({2, 2, 3}, rng)}, GradCheck{});
}

TEST(OpsConcat, ShapesValuesAndBackward) {
  Rng rng(19);
  Tensor a = rand_tensor({2, 2, 3, 2}, rng), b = rand_tensor({2, 3, 3, 2}, rng);
  auto l = make_layer("concat", Attrs());
  Tensor y = run(*l, {a, b});
  ASSERT_EQ(y.shape(), (Shape{2, 5, 3, 2}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t s = 0; s < 6; ++s) {
        const float want = c < 2 ? a[(n * 2 + c) * 6 + s] : b[(n * 3 + c - 2) * 6 + s];
        ASSERT_EQ(y[(n * 5 + c) * 6 + s], want);
      }
  auto l3 = make_layer("concat", Attrs().set("axis", 3));
  Tensor c3 = rand_tensor({2, 2, 3, 1}, rng);
  EXPECT_EQ(l3->infer({a.shape(), a.shape(), c3.shape()}), (Shape{2, 2, 3, 5}));
  grad_check(*l, {rand_tensor({1, 2, 2, 2}, rng), rand_tensor({1, 1, 2, 2}, rng)}, GradCheck{});
  grad_check(*l3, {rand_tensor({2, 2, 1, 2}, rng), rand_tensor({2, 2, 1, 1}, rng)}, GradCheck{});
  expect_error([&] { l->infer({a.shape(), Shape{2, 3, 4, 2}}); }, {"concat", "[2, 3, 4, 2]"});
  expect_error([&] { l->infer({a.shape()}); }, {"concat", "at least 2"});
}

TEST(OpsAdd, ValuesAndBackward) {
  Rng rng(20);
  Tensor a = rand_tensor({2, 3, 2}, rng), b = rand_tensor({2, 3, 2}, rng), c = rand_tensor({2, 3, 2}, rng);
  auto l = make_layer("add", Attrs());
  Tensor y = run(*l, {a, b, c});
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_FLOAT_EQ(y[i], a[i] + b[i] + c[i]);
  grad_check(*l, {a, b}, GradCheck{});
  expect_error([&] { l->infer({{2, 3, 2}, {2, 3, 3}}); }, {"add", "[2, 3, 3]"});
  expect_error([&] { l->infer({{2, 3, 2}}); }, {"add", "at least 2"});
}

// ---------------------------------------------------------------------------------------------
// Shape inference errors.

TEST(OpsInfer, ErrorsNameLayerAndShape) {
  auto conv = make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 7));
  expect_error([&] { conv->infer({{1, 3, 5, 5}}); },
               {"conv: input [1, 3, 5, 5] is smaller than kernel [7, 7]"});
  auto convp = make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 7).set("pad", 1));
  EXPECT_EQ(convp->infer({{1, 3, 5, 5}}), (Shape{1, 4, 1, 1}));
  expect_error([&] { convp->infer({{1, 3, 4, 5}}); }, {"conv", "smaller than kernel", "pads"});
  expect_error([&] { conv->infer({{1, 3, 9}}); }, {"conv", "rank-4", "[1, 3, 9]"});
  expect_error([&] { conv->infer({{1, 3, 9, 9}, {1, 3, 9, 9}}); }, {"conv", "1 input"});
  expect_error([&] { conv->infer({{1, 0, 9, 9}}); }, {"conv", "non-positive"});
  // Channels change after params were created.
  EXPECT_EQ(conv->infer({{2, 3, 9, 9}}), (Shape{2, 4, 3, 3}));
  expect_error([&] { conv->infer({{2, 5, 9, 9}}); }, {"conv", "weight", "[4, 3, 7, 7]", "5 channels"});
  // Groups must divide the input channels.
  auto g = make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("groups", 2));
  expect_error([&] { g->infer({{1, 3, 9, 9}}); }, {"conv", "divisible by groups 2"});
  auto fc = make_layer("fc", Attrs().set("out_features", 10));
  EXPECT_EQ(fc->infer({{4, 3, 2, 2}}), (Shape{4, 10}));
  expect_error([&] { fc->infer({{4, 13}}); }, {"fc", "weight", "[10, 12]", "[10, 13]"});
  expect_error([&] { fc->infer({{4}}); }, {"fc", "rank >= 2"});
  auto mp = make_layer("maxpool", Attrs().set("kernel", 3).set("stride", 2));
  expect_error([&] { mp->infer({{1, 2, 2, 2}}); }, {"maxpool: input [1, 2, 2, 2] is smaller than kernel [3, 3]"});
  auto lrn = make_layer("lrn", Attrs());
  expect_error([&] { lrn->infer({{2, 3}}); }, {"lrn", "rank >= 3"});
  auto sm = make_layer("softmax", Attrs().set("axis", 3));
  expect_error([&] { sm->infer({{2, 3}}); }, {"softmax", "axis 3"});
  auto bn = make_layer("batchnorm", Attrs());
  bn->infer({{1, 4, 2, 2}});
  expect_error([&] { bn->infer({{1, 5, 2, 2}}); }, {"batchnorm", "mean", "[4]", "[5]"});
  // forward on a mismatching input is caught too.
  Tensor x({1, 2, 9, 9}), out;
  expect_error([&] { conv->forward({&x}, out, RunContext{}); }, {"conv", "weight"});
}

TEST(OpsInfer, BadAttributesAtConstruction) {
  expect_error([] { make_layer("conv", Attrs().set("kernel", 3)); }, {"conv", "out_channels"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4)); }, {"conv", "kernel"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 0).set("kernel", 3)); },
               {"conv", "out_channels must be positive"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("stride", 0)); },
               {"conv", "stride"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("pad", -1)); },
               {"conv", "non-negative"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 5).set("kernel", 3).set("groups", 2)); },
               {"conv", "divisible by groups"});
  expect_error([] {
    make_layer("conv", Attrs().set("out_channels", 4).set("kernel", std::vector<int64_t>{3, 3, 3}));
  }, {"conv", "kernel", "[3, 3, 3]"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("weight_filler", "zeros")); },
               {"conv", "weight_filler", "zeros"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", "3")); },
               {"conv", "kernel", "string"});
  expect_error([] {
    make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("pad", 1).set("pads", std::vector<int64_t>{1, 1, 1, 1}));
  }, {"conv", "pad", "pads"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("pads", std::vector<int64_t>{1, 1})); },
               {"conv", "pads", "4 ints"});
  expect_error([] { make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3).set("strides", 2)); },
               {"conv", "unknown attribute 'strides'"});
  expect_error([] { make_layer("fc", Attrs()); }, {"fc", "out_features"});
  expect_error([] { make_layer("fc", Attrs().set("out_features", 3).set("bias", 2)); }, {"fc", "bias"});
  expect_error([] { make_layer("maxpool", Attrs()); }, {"maxpool", "kernel"});
  expect_error([] { make_layer("maxpool", Attrs().set("kernel", 2).set("pad", 2)); },
               {"maxpool", "smaller than the kernel"});
  expect_error([] { make_layer("maxpool", Attrs().set("kernel", 2).set("count_include_pad", 0)); },
               {"maxpool", "unknown attribute 'count_include_pad'"});
  expect_error([] { make_layer("dropout", Attrs().set("ratio", 1.0)); }, {"dropout", "ratio"});
  expect_error([] { make_layer("lrn", Attrs().set("size", 0)); }, {"lrn", "size"});
  expect_error([] { make_layer("relu", Attrs().set("slope", 0.1)); }, {"relu", "unknown attribute 'slope'"});
  expect_error([] { make_layer("add", Attrs().set("axis", 1)); }, {"add", "unknown attribute 'axis'"});
  expect_error([] { make_layer("convolution", Attrs()); }, {"unknown layer type 'convolution'", "conv"});
  // init_params before infer.
  auto c = make_layer("conv", Attrs().set("out_channels", 4).set("kernel", 3));
  Rng rng(1);
  expect_error([&] { c->init_params(rng); }, {"conv", "infer"});
}

}  // namespace

// fc computes Y = X W^T + b with the weights as either GEMM operand depending on the batch
// (small batches put W first); every batch size must match the formula, on both sides of the
// switch and on odd sizes.
// A frozen model's fc packs its weights once and reuses them: same results as the unfrozen path
// at every batch size, and freeze(false) drops the packed copy so changed weights are seen.
TEST(OpsFc, FrozenPrepackedWeightsMatchAndUnfreezeDropsThem) {
  Rng rng(12);
  Model m({45});
  m.add("fc", "fc", Attrs().set("out_features", 37));
  m.init_params(5);
  for (int64_t n : {1, 2, 7, 17, 64, 65}) {
    Tensor x = rand_tensor({n, 45}, rng);
    const Tensor plain = m.forward(x).clone();
    m.freeze(true);
    const Tensor first = m.forward(x).clone();
    const Tensor again = m.forward(x).clone();
    m.freeze(false);
    for (int64_t i = 0; i < plain.numel(); ++i) {
      ASSERT_NEAR(first[i], plain[i], 1e-5f * (1 + std::fabs(plain[i]))) << "batch " << n;
      ASSERT_EQ(again[i], first[i]) << "batch " << n;
    }
  }
  // A conv in front: its inference forward (direct kernels, weights packed once while frozen)
  // gives what the training-mode im2col + sgemm path gives.
  {
    Model mc({3, 9, 9});
    mc.add("conv", "conv", Attrs().set("out_channels", 5).set("kernel", 3).set("pad", 1).set("stride", 2));
    mc.add("fc", "fc", Attrs().set("out_features", 4));
    mc.init_params(8);
    Rng r2(3);
    Tensor xc = rand_tensor({6, 3, 9, 9}, r2);
    const Tensor ref = mc.forward(xc, true).clone();   // training mode: im2col + sgemm
    mc.freeze(true);
    const Tensor f1 = mc.forward(xc).clone();
    const Tensor f2 = mc.forward(xc).clone();
    mc.freeze(false);
    const Tensor u = mc.forward(xc).clone();
    for (int64_t i = 0; i < ref.numel(); ++i) {
      ASSERT_NEAR(f1[i], ref[i], 1e-4f * (1 + std::fabs(ref[i])));
      ASSERT_EQ(f2[i], f1[i]);
      ASSERT_NEAR(u[i], ref[i], 1e-4f * (1 + std::fabs(ref[i])));
    }
    // Changed conv weights after unfreezing are seen (packed per call when not frozen).
    mc.nodes()[0].layer->param("weight")->value.zero();
    const Tensor z = mc.forward(xc).clone();
    mc.freeze(true);
    const Tensor zf = mc.forward(xc).clone();
    mc.freeze(false);
    const Tensor zt = mc.forward(xc, true).clone();
    for (int64_t i = 0; i < zt.numel(); ++i) {
      ASSERT_NEAR(z[i], zt[i], 1e-5f * (1 + std::fabs(zt[i])));
      ASSERT_NEAR(zf[i], zt[i], 1e-5f * (1 + std::fabs(zt[i])));
    }
  }
  // Weights changed after unfreezing: a new frozen run must see them (all-zero weights: y = b).
  Tensor x = rand_tensor({7, 45}, rng);
  m.freeze(true);
  m.forward(x);
  m.freeze(false);
  m.nodes()[0].layer->param("weight")->value.zero();
  m.freeze(true);
  const Tensor& y = m.forward(x);
  const Tensor& b = m.nodes()[0].layer->param("bias")->value;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t o = 0; o < 37; ++o) ASSERT_EQ(y[i * 37 + o], b[o]);
  m.freeze(false);
}

TEST(OpsFc, EveryBatchSizeMatchesFormula) {
  Rng rng(11);
  for (int64_t n : {1, 2, 7, 64, 65, 130}) {
    auto l = make_layer("fc", Attrs().set("out_features", 37));
    Tensor x = rand_tensor({n, 45}, rng);
    l->infer({x.shape()});
    l->init_params(rng);
    for (int64_t o = 0; o < 37; ++o) l->param("bias")->value[o] = 0.01f * static_cast<float>(o);
    Tensor y = run(*l, {x});
    const Tensor& w = l->param("weight")->value;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < 37; ++o) {
        double s = 0.01 * o;
        for (int64_t k = 0; k < 45; ++k) s += static_cast<double>(x[i * 45 + k]) * w[o * 45 + k];
        ASSERT_NEAR(y[i * 37 + o], s, 1e-5) << "batch " << n << " row " << i << " out " << o;
      }
  }
}
