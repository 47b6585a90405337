// ReLU / leaky ReLU: y = x > 0 ? x : negative_slope * x.
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
    return infer_elementwise(type(), inputs);
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const float s = slope_;
    map_elementwise(input(type(), in, 0), out, [s](float v) {
      const float n = s * v;   // unconditional, so that the loop is if-converted and vectorised
      return v > 0.0f ? v : n;
    });
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    if (dout.shape() != x.shape())
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(x.shape()));
    const float s = slope_;
    map_elementwise(x, dout, *din[0], [s](float v, float dy) {
      const float n = s * dy;
      return v > 0.0f ? dy : n;
    });
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
