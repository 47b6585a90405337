// Inverted dropout: in training y = x * mask / (1 - ratio), mask ~ Bernoulli(1 - ratio) drawn from
// ctx.rng; identity at inference.
#include <omp.h>

#include <cstring>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class Dropout final : public Layer {
 public:
  explicit Dropout(const Attrs& a) : Layer(a) {
    a.check_keys("dropout", {"ratio"});
    ratio_ = a.get_float("ratio", 0.5);
    if (!(ratio_ >= 0.0 && ratio_ < 1.0))
      fail("dropout", "ratio must be in [0, 1), got " + std::to_string(ratio_));
  }
  std::string type() const override { return "dropout"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    check_positive_dims(type(), inputs[0]);
    return inputs[0];
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) override {
    const Tensor& x = input(type(), in, 0);
    out.resize(x.shape());
    const int64_t n = x.numel();
    masked_ = ctx.training && ratio_ > 0.0;
    if (!masked_) {
      std::memcpy(out.data(), x.data(), sizeof(float) * static_cast<size_t>(n));
      return;
    }
    if (!ctx.rng) fail(type(), "training needs a random generator (RunContext::rng is null)");
    mask_.resize(x.shape());
    float* m = mask_.data();
    const float keep = static_cast<float>(1.0 / (1.0 - ratio_));
    // Drawn sequentially so that a seed reproduces the mask exactly.
    for (int64_t i = 0; i < n; ++i) m[i] = ctx.rng->uniform() >= ratio_ ? keep : 0.0f;
    const float* xd = x.data();
    float* y = out.data();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) y[i] = xd[i] * m[i];
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    if (dout.shape() != x.shape())
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(x.shape()));
    din[0]->resize(x.shape());
    const int64_t n = x.numel();
    const float* dy = dout.data();
    float* dx = din[0]->data();
    if (!masked_ || mask_.shape() != x.shape()) {
      std::memcpy(dx, dy, sizeof(float) * static_cast<size_t>(n));
      return;
    }
    const float* m = mask_.data();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * m[i];
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape&) const override {
    return inputs.empty() ? 0 : shape_numel(inputs[0]);
  }

 private:
  double ratio_ = 0.5;
  Tensor mask_;          // 0 or 1/(1-ratio) per element, from the last training forward
  bool masked_ = false;  // whether the last forward applied a mask
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const Attrs& a) { return std::make_unique<Dropout>(a); }

}  // namespace deftnn::ops
