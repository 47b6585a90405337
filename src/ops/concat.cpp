// Concatenation along one axis of >= 2 inputs whose other dimensions match.
#include <cstring>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class Concat final : public Layer {
 public:
  explicit Concat(const Attrs& a) : Layer(a) {
    a.check_keys("concat", {"axis"});
    axis_ = a.get_int("axis", 1);
  }
  std::string type() const override { return "concat"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_min_inputs(type(), inputs, 2);
    return out_shape(inputs);
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    std::vector<Shape> shapes;
    for (size_t i = 0; i < in.size(); ++i) shapes.push_back(input(type(), in, i).shape());
    check_min_inputs(type(), shapes, 2);
    const Shape os = out_shape(shapes);
    const size_t a = static_cast<size_t>(norm_axis(type(), axis_, os.size()));
    out.resize(os);
    const int64_t outer = prod(os, 0, a), inner = prod(os, a + 1, os.size()), row = os[a] * inner;
    int64_t off = 0;
    for (const Tensor* t : in) {
      const int64_t chunk = t->dim(static_cast<int>(a)) * inner;
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out.data() + o * row + off, t->data() + o * chunk,
                    sizeof(float) * static_cast<size_t>(chunk));
      off += chunk;
    }
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    std::vector<Shape> shapes;
    for (size_t i = 0; i < in.size(); ++i) shapes.push_back(input(type(), in, i).shape());
    const Shape os = out_shape(shapes);
    if (dout.shape() != os)
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(os));
    const size_t a = static_cast<size_t>(norm_axis(type(), axis_, os.size()));
    const int64_t outer = prod(os, 0, a), inner = prod(os, a + 1, os.size()), row = os[a] * inner;
    int64_t off = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      const int64_t chunk = shapes[i][a] * inner;
      if (i < din.size() && din[i]) {
        din[i]->resize(shapes[i]);
        for (int64_t o = 0; o < outer; ++o)
          std::memcpy(din[i]->data() + o * chunk, dout.data() + o * row + off,
                      sizeof(float) * static_cast<size_t>(chunk));
      }
      off += chunk;
    }
  }

 private:
  Shape out_shape(const std::vector<Shape>& in) const {
    const Shape& s0 = in[0];
    check_positive_dims(type(), s0);
    const size_t a = static_cast<size_t>(norm_axis(type(), axis_, s0.size()));
    Shape out = s0;
    for (size_t i = 1; i < in.size(); ++i) {
      const Shape& s = in[i];
      bool ok = s.size() == s0.size();
      for (size_t d = 0; ok && d < s.size(); ++d) ok = s[d] > 0 && (d == a || s[d] == s0[d]);
      if (!ok)
        fail(type(), "input " + std::to_string(i) + " " + shape_str(s) + " does not match input 0 " +
                         shape_str(s0) + " outside axis " + std::to_string(a));
      out[a] += s[a];
    }
    return out;
  }
  int64_t axis_ = 1;
};

// Elementwise sum of >= 2 inputs of identical shape.
class Add final : public Layer {
 public:
  explicit Add(const Attrs& a) : Layer(a) { a.check_keys("add", {}); }
  std::string type() const override { return "add"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_min_inputs(type(), inputs, 2);
    check_positive_dims(type(), inputs[0]);
    for (size_t i = 1; i < inputs.size(); ++i)
      if (inputs[i] != inputs[0])
        fail(type(), "input " + std::to_string(i) + " " + shape_str(inputs[i]) +
                         " does not match input 0 " + shape_str(inputs[0]));
    return inputs[0];
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    std::vector<Shape> shapes;
    for (size_t i = 0; i < in.size(); ++i) shapes.push_back(input(type(), in, i).shape());
    out.resize(infer(shapes));
    const int64_t n = out.numel();
    float* y = out.data();
    std::memcpy(y, in[0]->data(), sizeof(float) * static_cast<size_t>(n));
    for (size_t i = 1; i < in.size(); ++i) {
      const float* x = in[i]->data();
      for (int64_t k = 0; k < n; ++k) y[k] += x[k];
    }
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    for (size_t i = 0; i < in.size() && i < din.size(); ++i) {
      if (!din[i]) continue;
      const Tensor& x = input(type(), in, i);
      if (dout.shape() != x.shape())
        fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(x.shape()));
      din[i]->resize(x.shape());
      std::memcpy(din[i]->data(), dout.data(), sizeof(float) * static_cast<size_t>(x.numel()));
    }
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape& output) const override {
    return inputs.size() < 2 ? 0 : static_cast<int64_t>(inputs.size() - 1) * shape_numel(output);
  }
};

}  // namespace

std::unique_ptr<Layer> make_concat(const Attrs& a) { return std::make_unique<Concat>(a); }
std::unique_ptr<Layer> make_add(const Attrs& a) { return std::make_unique<Add>(a); }

}  // namespace deftnn::ops
