// Layers that ONNX models need beyond the Caffe set: clip (ReLU6), sigmoid, mul (two inputs of one
// shape), eltwise_const (x + c or x * c with a stored constant broadcast NumPy-style), reshape
// (per-sample target shape), pad (constant / edge / reflect) and constant (a stored tensor).
// Each has forward and backward so that imported models can be fine-tuned.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

void check_same(const std::string& type, const Shape& a, const Shape& b, const char* what) {
  if (a != b) fail(type, std::string(what) + " " + shape_str(a) + " does not match " + shape_str(b));
}

// clip: y = min(max(x, min), max); the gradient passes where min < x < max.
class Clip final : public Layer {
 public:
  explicit Clip(const Attrs& a) : Layer(a) {
    a.check_keys("clip", {"min", "max"});
    lo_ = static_cast<float>(a.get_float("min", -std::numeric_limits<double>::infinity()));
    hi_ = static_cast<float>(a.get_float("max", std::numeric_limits<double>::infinity()));
    if (!(lo_ <= hi_)) fail("clip", "min must not exceed max");
  }
  std::string type() const override { return "clip"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    return infer_elementwise(type(), inputs);
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const float lo = lo_, hi = hi_;
    map_elementwise(input(type(), in, 0), out,
                    [lo, hi](float v) { return std::min(std::max(v, lo), hi); });
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    check_same(type(), dout.shape(), x.shape(), "dout");
    const float lo = lo_, hi = hi_;
    map_elementwise(x, dout, *din[0],
                    [lo, hi](float v, float dy) { return static_cast<float>(v > lo && v < hi) * dy; });
  }
  float lo_, hi_;
};

// sigmoid: y = 1 / (1 + exp(-x)); dy/dx = y (1 - y).
class Sigmoid final : public Layer {
 public:
  explicit Sigmoid(const Attrs& a) : Layer(a) { a.check_keys("sigmoid", {}); }
  std::string type() const override { return "sigmoid"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    return infer_elementwise(type(), inputs);
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    // Stable for large |x|: exp of a non-positive number only.
    map_elementwise(input(type(), in, 0), out, [](float v) {
      if (v >= 0) return 1.0f / (1.0f + std::exp(-v));
      const float e = std::exp(v);
      return e / (1.0f + e);
    });
  }
  void backward(const std::vector<const Tensor*>&, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    check_same(type(), dout.shape(), out.shape(), "dout");
    map_elementwise(out, dout, *din[0], [](float y, float dy) { return dy * y * (1.0f - y); });
  }
};

// mul: the elementwise product of two inputs of the same shape.
class Mul final : public Layer {
 public:
  explicit Mul(const Attrs& a) : Layer(a) { a.check_keys("mul", {}); }
  std::string type() const override { return "mul"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 2);
    check_positive_dims(type(), inputs[0]);
    check_same(type(), inputs[1], inputs[0], "input 1");
    return inputs[0];
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& a = input(type(), in, 0);
    const Tensor& b = input(type(), in, 1);
    check_same(type(), b.shape(), a.shape(), "input 1");
    out.resize(a.shape());
    for (int64_t i = 0; i < a.numel(); ++i) out[i] = a[i] * b[i];
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    const Tensor& a = input(type(), in, 0);
    const Tensor& b = input(type(), in, 1);
    check_same(type(), dout.shape(), a.shape(), "dout");
    for (size_t k = 0; k < din.size() && k < 2; ++k) {
      if (!din[k]) continue;
      const Tensor& other = k == 0 ? b : a;
      din[k]->resize(a.shape());
      for (int64_t i = 0; i < a.numel(); ++i) (*din[k])[i] = dout[i] * other[i];
    }
  }
};

// Strides for broadcasting a constant of shape c (same rank as x, each dim 1 or x's) over x:
// a 0 stride where the constant's dim is 1.
std::vector<int64_t> bcast_strides(const Shape& c, const Shape& x) {
  std::vector<int64_t> st(x.size(), 0);
  int64_t s = 1;
  for (size_t i = c.size(); i-- > 0;) {
    st[i] = c[i] == 1 ? 0 : s;
    s *= c[i];
  }
  return st;
}

// Calls fn(i, j) for every flat index i of x and the matching flat index j of the constant.
template <class Fn>
void for_bcast(const Shape& x, const std::vector<int64_t>& st, Fn&& fn) {
  const size_t r = x.size();
  const int64_t inner = x.empty() ? 1 : x[r - 1];
  const int64_t outer = shape_numel(x) / std::max<int64_t>(inner, 1);
  std::vector<int64_t> idx(r, 0);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t base = 0;
    int64_t rem = o;
    for (size_t d = r - 1; d-- > 0;) {
      base += (rem % x[d]) * st[d];
      rem /= x[d];
    }
    const int64_t si = st[r - 1];
    for (int64_t k = 0; k < inner; ++k) fn(o * inner + k, base + k * si);
  }
}

// eltwise_const: y = x + c (op "add") or y = x * c (op "mul"), with the non-trainable parameter
// "value" of shape `value_shape` (the input's rank, batch dimension included): each dimension is 1
// (broadcast) or the input's. Its first dimension, when not 1, must equal the batch at run time.
class EltwiseConst final : public Layer {
 public:
  explicit EltwiseConst(const Attrs& a) : Layer(a) {
    a.check_keys("eltwise_const", {"op", "value_shape"});
    const std::string op = a.get_str("op");
    if (op != "add" && op != "mul") fail(type(), "op must be \"add\" or \"mul\", got \"" + op + "\"");
    mul_ = op == "mul";
    shape_ = a.get_ints("value_shape");
    if (shape_.empty()) fail(type(), "value_shape must not be empty");
    for (int64_t d : shape_)
      if (d <= 0) fail(type(), "value_shape " + shape_str(shape_) + " has a non-positive dimension");
  }
  std::string type() const override { return "eltwise_const"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    check(inputs[0], false);
    ensure_param(*this, "value", shape_, false, 0.0f, 0.0f, "");
    return inputs[0];
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    check(x.shape(), true);
    const Param* p = param("value");
    if (!p) fail(type(), "forward called before infer (no value)");
    out.resize(x.shape());
    const float* c = p->value.data();
    const float* xd = x.data();
    float* y = out.data();
    const auto st = bcast_strides(shape_, x.shape());
    if (mul_) for_bcast(x.shape(), st, [&](int64_t i, int64_t j) { y[i] = xd[i] * c[j]; });
    else for_bcast(x.shape(), st, [&](int64_t i, int64_t j) { y[i] = xd[i] + c[j]; });
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    check_same(type(), dout.shape(), x.shape(), "dout");
    din[0]->resize(x.shape());
    float* dx = din[0]->data();
    const float* dy = dout.data();
    if (!mul_) {
      std::memcpy(dx, dy, sizeof(float) * static_cast<size_t>(x.numel()));
      return;
    }
    const float* c = param("value")->value.data();
    for_bcast(x.shape(), bcast_strides(shape_, x.shape()),
              [&](int64_t i, int64_t j) { dx[i] = dy[i] * c[j]; });
  }

 private:
  void check(const Shape& x, bool at_run) const {
    check_positive_dims(type(), x);
    if (x.size() != shape_.size())
      fail(type(), "value " + shape_str(shape_) + " and input " + shape_str(x) + " differ in rank");
    for (size_t i = 0; i < x.size(); ++i) {
      if (shape_[i] == 1 || shape_[i] == x[i]) continue;
      if (i == 0 && !at_run) continue;  // the batch is only known at run time
      fail(type(), "value " + shape_str(shape_) + " does not broadcast to the input " + shape_str(x));
    }
  }
  bool mul_ = false;
  Shape shape_;
};

// reshape: [N, ...] -> [N, shape...] with the same element count per sample.
class Reshape final : public Layer {
 public:
  explicit Reshape(const Attrs& a) : Layer(a) {
    a.check_keys("reshape", {"shape"});
    shape_ = a.get_ints("shape");
    for (int64_t d : shape_)
      if (d <= 0) fail(type(), "shape " + shape_str(shape_) + " must have positive dimensions");
  }
  std::string type() const override { return "reshape"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    return out_shape(inputs[0]);
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    out.resize(out_shape(x.shape()));
    std::memcpy(out.data(), x.data(), sizeof(float) * static_cast<size_t>(x.numel()));
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    if (dout.numel() != x.numel()) fail(type(), "dout " + shape_str(dout.shape()) + " does not match");
    din[0]->resize(x.shape());
    std::memcpy(din[0]->data(), dout.data(), sizeof(float) * static_cast<size_t>(x.numel()));
  }

 private:
  Shape out_shape(const Shape& s) const {
    check_positive_dims(type(), s);
    if (prod(s, 1, s.size()) != prod(shape_, 0, shape_.size()))
      fail(type(), "cannot reshape " + shape_str(s) + " to [N] + " + shape_str(shape_));
    Shape o{s[0]};
    o.insert(o.end(), shape_.begin(), shape_.end());
    return o;
  }
  Shape shape_;
};

// pad: pads = [begin of dims 1..r-1, end of dims 1..r-1] (the batch is never padded), mode
// "constant" (with `value`), "edge" or "reflect".
class Pad final : public Layer {
 public:
  explicit Pad(const Attrs& a) : Layer(a) {
    a.check_keys("pad", {"pads", "mode", "value"});
    pads_ = a.get_ints("pads");
    mode_ = a.get_str("mode", "constant");
    value_ = static_cast<float>(a.get_float("value", 0.0));
    if (mode_ != "constant" && mode_ != "edge" && mode_ != "reflect")
      fail(type(), "mode must be constant, edge or reflect, got \"" + mode_ + "\"");
    if (pads_.size() % 2 != 0) fail(type(), "pads must hold a begin and an end per dimension");
    for (int64_t p : pads_)
      if (p < 0) fail(type(), "negative pads (cropping) are not supported");
  }
  std::string type() const override { return "pad"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    return out_shape(inputs[0]);
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    const Shape os = out_shape(x.shape());
    out.resize(os);
    map(x.shape(), os, [&](int64_t o, int64_t i) { out[o] = i < 0 ? value_ : x[i]; });
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    const Shape os = out_shape(x.shape());
    check_same(type(), dout.shape(), os, "dout");
    din[0]->resize(x.shape());
    din[0]->zero();
    map(x.shape(), os, [&](int64_t o, int64_t i) {
      if (i >= 0) (*din[0])[i] += dout[o];
    });
  }

 private:
  Shape out_shape(const Shape& s) const {
    check_positive_dims(type(), s);
    const size_t r = s.size() - 1;
    if (pads_.size() != 2 * r)
      fail(type(), "pads has " + std::to_string(pads_.size()) + " entries but the input " +
                       shape_str(s) + " needs " + std::to_string(2 * r));
    Shape o = s;
    for (size_t d = 0; d < r; ++d) {
      o[d + 1] += pads_[d] + pads_[d + r];
      if (mode_ == "reflect" && (pads_[d] >= s[d + 1] || pads_[d + r] >= s[d + 1]))
        fail(type(), "reflect padding must be smaller than the dimension, input " + shape_str(s));
    }
    return o;
  }
  // Source index along one dimension (-1: the constant).
  int64_t src(int64_t o, int64_t begin, int64_t n) const {
    int64_t i = o - begin;
    if (i >= 0 && i < n) return i;
    if (mode_ == "constant") return -1;
    if (mode_ == "edge") return i < 0 ? 0 : n - 1;
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    i = ((i % period) + period) % period;
    return i < n ? i : period - i;
  }
  // fn(out flat index, in flat index or -1) over every output element.
  template <class Fn>
  void map(const Shape& s, const Shape& os, Fn&& fn) const {
    const size_t rank = s.size(), r = rank - 1;
    const int64_t total = shape_numel(os);
    std::vector<int64_t> idx(rank, 0);
    for (int64_t o = 0; o < total; ++o) {
      int64_t rem = o, in = 0, mul = 1;
      bool outside = false;
      for (size_t d = rank; d-- > 0;) {
        const int64_t od = rem % os[d];
        rem /= os[d];
        const int64_t id = d == 0 ? od : src(od, pads_[d - 1], s[d]);
        if (id < 0) outside = true;
        in += id * mul;
        mul *= s[d];
      }
      (void)r;
      fn(o, outside ? -1 : in);
    }
  }
  std::vector<int64_t> pads_;
  std::string mode_;
  float value_ = 0.0f;
};

// constant: outputs the stored "value" (shape `value_shape`, batch first). The input only gives
// the batch: a value whose first dimension is 1 is repeated over it; otherwise it must equal it
// at run time (shape inference reports the input's batch either way).
// With batch_free = 1 the value is output as is, whatever the batch (a model whose output is a
// constant folded at import).
class Constant final : public Layer {
 public:
  explicit Constant(const Attrs& a) : Layer(a) {
    a.check_keys("constant", {"value_shape", "batch_free"});
    shape_ = a.get_ints("value_shape");
    free_ = a.get_int("batch_free", 0) != 0;
    if (shape_.empty()) fail(type(), "value_shape must not be empty");
    for (int64_t d : shape_)
      if (d <= 0) fail(type(), "value_shape " + shape_str(shape_) + " has a non-positive dimension");
  }
  std::string type() const override { return "constant"; }
  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    ensure_param(*this, "value", shape_, false, 0.0f, 0.0f, "");
    return out_shape(inputs[0][0]);
  }
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    const Param* p = param("value");
    if (!p) fail(type(), "forward called before infer (no value)");
    const int64_t n = x.dim(0);
    if (!free_ && shape_[0] != 1 && shape_[0] != n)
      fail(type(), "value " + shape_str(shape_) + " does not fit a batch of " + std::to_string(n));
    out.resize(out_shape(n));
    const int64_t reps = out.numel() / p->value.numel();
    for (int64_t r = 0; r < reps; ++r)
      std::memcpy(out.data() + r * p->value.numel(), p->value.data(),
                  sizeof(float) * static_cast<size_t>(p->value.numel()));
  }
  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor&,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    din[0]->resize(x.shape());
    din[0]->zero();
  }

 private:
  Shape out_shape(int64_t n) const {
    if (free_) return shape_;
    Shape o = shape_;
    o[0] = n;
    return o;
  }
  Shape shape_;
  bool free_ = false;
};

}  // namespace

std::unique_ptr<Layer> make_clip(const Attrs& a) { return std::make_unique<Clip>(a); }
std::unique_ptr<Layer> make_sigmoid(const Attrs& a) { return std::make_unique<Sigmoid>(a); }
std::unique_ptr<Layer> make_mul(const Attrs& a) { return std::make_unique<Mul>(a); }
std::unique_ptr<Layer> make_eltwise_const(const Attrs& a) { return std::make_unique<EltwiseConst>(a); }
std::unique_ptr<Layer> make_reshape(const Attrs& a) { return std::make_unique<Reshape>(a); }
std::unique_ptr<Layer> make_pad(const Attrs& a) { return std::make_unique<Pad>(a); }
std::unique_ptr<Layer> make_constant(const Attrs& a) { return std::make_unique<Constant>(a); }

}  // namespace deftnn::ops
