// Flatten: [d0, ..., dk] -> [prod(d < axis), prod(d >= axis)].
#include <cstring>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class Flatten final : public Layer {
 public:
  explicit Flatten(const Attrs& a) : Layer(a) {
    a.check_keys("flatten", {"axis"});
    axis_ = a.get_int("axis", 1);
  }
  std::string type() const override { return "flatten"; }

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
    if (dout.numel() != x.numel())
      fail(type(), "dout " + shape_str(dout.shape()) + " does not match the input " +
                       shape_str(x.shape()));
    din[0]->resize(x.shape());
    std::memcpy(din[0]->data(), dout.data(), sizeof(float) * static_cast<size_t>(x.numel()));
  }

 private:
  Shape out_shape(const Shape& s) const {
    check_positive_dims(type(), s);
    const int64_t r = static_cast<int64_t>(s.size());
    const int64_t a = axis_ < 0 ? axis_ + r : axis_;
    if (a < 0 || a > r)
      fail(type(), "axis " + std::to_string(axis_) + " is out of range for input " + shape_str(s));
    return {prod(s, 0, static_cast<size_t>(a)), prod(s, static_cast<size_t>(a), s.size())};
  }
  int64_t axis_ = 1;
};

}  // namespace

std::unique_ptr<Layer> make_flatten(const Attrs& a) { return std::make_unique<Flatten>(a); }

}  // namespace deftnn::ops
