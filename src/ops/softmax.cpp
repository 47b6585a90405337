// Softmax along one axis, numerically stable (subtracts the maximum).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class Softmax final : public Layer {
 public:
  explicit Softmax(const Attrs& a) : Layer(a) {
    a.check_keys("softmax", {"axis"});
    axis_ = a.get_int("axis", 1);
  }
  std::string type() const override { return "softmax"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    check_positive_dims(type(), inputs[0]);
    norm_axis(type(), axis_, inputs[0].size());
    return inputs[0];
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    int64_t outer, dim, inner;
    split(x.shape(), outer, dim, inner);
    out.resize(x.shape());
    const float* xd = x.data();
    float* y = out.data();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelMin && !omp_in_parallel())
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float* xr = xd + o * dim * inner + i;
        float* yr = y + o * dim * inner + i;
        float m = xr[0];
        for (int64_t c = 1; c < dim; ++c) m = std::max(m, xr[c * inner]);
        float s = 0.0f;
        for (int64_t c = 0; c < dim; ++c) {
          const float e = std::exp(xr[c * inner] - m);
          yr[c * inner] = e;
          s += e;
        }
        const float inv = 1.0f / s;
        for (int64_t c = 0; c < dim; ++c) yr[c * inner] *= inv;
      }
  }

  // dx = y * (dy - sum_c dy * y)
  void backward(const std::vector<const Tensor*>& in, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    if (dout.shape() != x.shape() || out.shape() != x.shape())
      fail(type(), "dout " + shape_str(dout.shape()) + " / out " + shape_str(out.shape()) +
                       " do not match the input " + shape_str(x.shape()));
    int64_t outer, dim, inner;
    split(x.shape(), outer, dim, inner);
    din[0]->resize(x.shape());
    const float* y = out.data();
    const float* dy = dout.data();
    float* dx = din[0]->data();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelMin && !omp_in_parallel())
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t b = o * dim * inner + i;
        float dot = 0.0f;
        for (int64_t c = 0; c < dim; ++c) dot += dy[b + c * inner] * y[b + c * inner];
        for (int64_t c = 0; c < dim; ++c)
          dx[b + c * inner] = y[b + c * inner] * (dy[b + c * inner] - dot);
      }
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape&) const override {
    return inputs.empty() ? 0 : 3 * shape_numel(inputs[0]);
  }

 private:
  void split(const Shape& s, int64_t& outer, int64_t& dim, int64_t& inner) const {
    check_positive_dims(type(), s);
    const size_t a = static_cast<size_t>(norm_axis(type(), axis_, s.size()));
    outer = prod(s, 0, a);
    dim = s[a];
    inner = prod(s, a + 1, s.size());
  }
  int64_t axis_ = 1;
};

}  // namespace

std::unique_ptr<Layer> make_softmax(const Attrs& a) { return std::make_unique<Softmax>(a); }

}  // namespace deftnn::ops
