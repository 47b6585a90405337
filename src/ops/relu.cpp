// ReLU / leaky ReLU: y = x > 0 ? x : negative_slope * x.
#include <omp.h>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class ReLU final : public Layer {
 public:
  explicit ReLU(const Attrs& a) : Layer(a) {
    a.check_keys("relu", {"negative_slope"});
    slope_ = static_cast<float>(a.get_float("negative_slope", 0.0));
  }
  std::string type() const override { return "relu"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    check_positive_dims(type(), inputs[0]);
    return inputs[0];
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    out.resize(x.shape());
    const float* xd = x.data();
    float* y = out.data();
    const int64_t n = x.numel();
    const float s = slope_;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) y[i] = xd[i] > 0.0f ? xd[i] : s * xd[i];
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    if (dout.shape() != x.shape())
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(x.shape()));
    din[0]->resize(x.shape());
    const float* xd = x.data();
    const float* dy = dout.data();
    float* dx = din[0]->data();
    const int64_t n = x.numel();
    const float s = slope_;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) dx[i] = xd[i] > 0.0f ? dy[i] : s * dy[i];
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape&) const override {
    return inputs.empty() ? 0 : shape_numel(inputs[0]);
  }

 private:
  float slope_ = 0.0f;
};

}  // namespace

std::unique_ptr<Layer> make_relu(const Attrs& a) { return std::make_unique<ReLU>(a); }

}  // namespace deftnn::ops
