// The layers added for ONNX models (src/ops/elementwise.cpp): forward against direct formulas,
// backward against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/rng.h"

using namespace deftnn;

namespace {

Tensor rnd(const Shape& s, Rng& rng) {
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(-2.0f, 2.0f);
  return t;
}

Tensor fwd(Layer& l, const std::vector<Tensor>& in) {
  std::vector<Shape> s;
  std::vector<const Tensor*> p;
  for (const auto& t : in) {
    s.push_back(t.shape());
    p.push_back(&t);
  }
  const Shape os = l.infer(s);
  Tensor out;
  l.forward(p, out, RunContext{true, nullptr});
  EXPECT_EQ(out.shape(), os);
  return out;
}

// Loss = sum(out * r) for a fixed random r; compares analytic dL/din[k] with central differences.
void check_grad(Layer& l, std::vector<Tensor> in, double tol = 2e-3) {
  Rng rng(7);
  Tensor out = fwd(l, in);
  Tensor r = rnd(out.shape(), rng);
  std::vector<const Tensor*> p;
  for (const auto& t : in) p.push_back(&t);
  std::vector<Tensor> din(in.size());
  std::vector<Tensor*> dp;
  for (auto& t : din) dp.push_back(&t);
  l.backward(p, out, r, dp, RunContext{true, nullptr});
  auto loss = [&]() {
    Tensor o = fwd(l, in);
    double s = 0;
    for (int64_t i = 0; i < o.numel(); ++i) s += static_cast<double>(o[i]) * r[i];
    return s;
  };
  const float h = 1e-2f;
  for (size_t k = 0; k < in.size(); ++k) {
    ASSERT_EQ(din[k].shape(), in[k].shape());
    for (int64_t i = 0; i < in[k].numel(); ++i) {
      const float x0 = in[k][i];
      in[k][i] = x0 + h;
      const double lp = loss();
      in[k][i] = x0 - h;
      const double lm = loss();
      in[k][i] = x0;
      EXPECT_NEAR(din[k][i], (lp - lm) / (2 * h), tol) << l.type() << " input " << k << " element " << i;
    }
  }
}

}  // namespace

TEST(OnnxOps, ClipForwardBackward) {
  Rng rng(1);
  auto l = make_layer("clip", Attrs().set("min", 0.0).set("max", 1.5));
  Tensor x = rnd({2, 3, 4}, rng);
  for (int64_t i = 0; i < x.numel(); ++i)  // keep away from the kinks for the differences
    if (std::fabs(x[i]) < 0.05f || std::fabs(x[i] - 1.5f) < 0.05f) x[i] += 0.2f;
  Tensor y = fwd(*l, {x});
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y[i], std::min(std::max(x[i], 0.0f), 1.5f));
  check_grad(*l, {x});
  EXPECT_THROW(make_layer("clip", Attrs().set("min", 2.0).set("max", 1.0)), Error);
}

TEST(OnnxOps, SigmoidForwardBackward) {
  Rng rng(2);
  auto l = make_layer("sigmoid", Attrs());
  Tensor x = rnd({2, 5}, rng);
  x[0] = -100.0f;
  x[1] = 100.0f;
  Tensor y = fwd(*l, {x});
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(y[i], 1.0 / (1.0 + std::exp(-double(x[i]))), 1e-6);
  x[0] = 0.3f;
  x[1] = -0.2f;
  check_grad(*l, {x});
}

TEST(OnnxOps, MulForwardBackward) {
  Rng rng(3);
  auto l = make_layer("mul", Attrs());
  Tensor a = rnd({2, 3, 2, 2}, rng), b = rnd({2, 3, 2, 2}, rng);
  Tensor y = fwd(*l, {a, b});
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(y[i], a[i] * b[i]);
  check_grad(*l, {a, b});
  EXPECT_THROW(l->infer({{2, 3}, {2, 4}}), Error);
}

TEST(OnnxOps, EltwiseConstBroadcast) {
  Rng rng(4);
  for (const char* op : {"add", "mul"}) {
    auto l = make_layer("eltwise_const", Attrs().set("op", op).set("value_shape", Shape{1, 3, 1, 2}));
    l->infer({{2, 3, 4, 2}});
    Tensor c = rnd({1, 3, 1, 2}, rng);
    l->param("value")->value = c;
    Tensor x = rnd({2, 3, 4, 2}, rng);
    Tensor y = fwd(*l, {x});
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t h = 0; h < 4; ++h)
          for (int64_t w = 0; w < 2; ++w) {
            const int64_t i = ((n * 3 + ch) * 4 + h) * 2 + w;
            const float cv = c[ch * 2 + w];
            EXPECT_EQ(y[i], std::string(op) == "add" ? x[i] + cv : x[i] * cv);
          }
    check_grad(*l, {x});
  }
  auto bad = make_layer("eltwise_const", Attrs().set("op", "add").set("value_shape", Shape{1, 5}));
  EXPECT_THROW(bad->infer({{2, 4}}), Error);
  EXPECT_THROW(make_layer("eltwise_const", Attrs().set("op", "pow").set("value_shape", Shape{1})), Error);
}

TEST(OnnxOps, ReshapeAndConstant) {
  Rng rng(5);
  auto l = make_layer("reshape", Attrs().set("shape", Shape{6, 2}));
  Tensor x = rnd({2, 3, 4}, rng);
  Tensor y = fwd(*l, {x});
  EXPECT_EQ(y.shape(), (Shape{2, 6, 2}));
  check_grad(*l, {x});
  EXPECT_THROW(l->infer({{2, 5}}), Error);

  auto c = make_layer("constant", Attrs().set("value_shape", Shape{1, 3}));
  c->infer({{4, 2}});
  c->param("value")->value = Tensor::from({1, 3}, {1, 2, 3});
  Tensor o = fwd(*c, {Tensor({4, 2})});
  ASSERT_EQ(o.shape(), (Shape{4, 3}));
  EXPECT_EQ(o[3 * 3 + 2], 3.0f);
}

TEST(OnnxOps, PadModes) {
  Rng rng(6);
  Tensor x = Tensor::from({1, 1, 1, 3}, {1, 2, 3});
  auto c = make_layer("pad", Attrs().set("pads", std::vector<int64_t>{0, 0, 2, 0, 0, 1}).set("value", 9.0));
  Tensor y = fwd(*c, {x});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 1, 6}));
  EXPECT_EQ(std::vector<float>(y.data(), y.data() + 6), (std::vector<float>{9, 9, 1, 2, 3, 9}));
  auto e = make_layer("pad", Attrs().set("pads", std::vector<int64_t>{0, 0, 2, 0, 0, 1}).set("mode", "edge"));
  y = fwd(*e, {x});
  EXPECT_EQ(std::vector<float>(y.data(), y.data() + 6), (std::vector<float>{1, 1, 1, 2, 3, 3}));
  auto r = make_layer("pad", Attrs().set("pads", std::vector<int64_t>{0, 0, 2, 0, 0, 1}).set("mode", "reflect"));
  y = fwd(*r, {x});
  EXPECT_EQ(std::vector<float>(y.data(), y.data() + 6), (std::vector<float>{3, 2, 1, 2, 3, 2}));
  for (const char* mode : {"constant", "edge", "reflect"}) {
    auto l = make_layer("pad", Attrs().set("pads", std::vector<int64_t>{0, 1, 1, 0, 2, 1}).set("mode", mode));
    check_grad(*l, {rnd({2, 2, 3, 3}, rng)});
  }
  EXPECT_THROW(make_layer("pad", Attrs().set("pads", std::vector<int64_t>{-1, 0})), Error);
}
