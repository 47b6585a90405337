// Batch normalisation, inference form: y = (x - mean) / sqrt(var + eps) * scale + shift, with the
// statistics as constants (non-trainable params "mean", "var", "scale", "shift", each [C]).
#include <omp.h>

#include <cmath>
#include <vector>

#include "ops/common.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class BatchNorm final : public Layer {
 public:
  explicit BatchNorm(const Attrs& a) : Layer(a) {
    a.check_keys("batchnorm", {"eps"});
    eps_ = a.get_float("eps", 1e-5);
    if (!(eps_ >= 0.0)) fail("batchnorm", "eps must be non-negative");
  }
  std::string type() const override { return "batchnorm"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    const Shape& s = inputs[0];
    if (s.size() < 2) fail(type(), "expects an input [N, C, ...] of rank >= 2, got " + shape_str(s));
    check_positive_dims(type(), s);
    const int64_t C = s[1];
    const std::string why = "input has " + std::to_string(C) + " channels";
    for (const char* name : {"mean", "var", "scale", "shift"}) {
      const bool fresh = param(name) == nullptr;
      Param& p = ensure_param(*this, name, {C}, false, 0.0f, 0.0f, why);
      if (fresh && (std::string(name) == "var" || std::string(name) == "scale")) p.value.fill(1.0f);
    }
    return s;
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    int64_t N, C, S;
    coefficients(x.shape(), N, C, S);
    out.resize(x.shape());
    const float* xd = x.data();
    float* y = out.data();
    const float* a = mul_.data();
    const float* b = add_.data();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelMin && !omp_in_parallel())
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t o = (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) y[o + s] = xd[o + s] * a[c] + b[c];
      }
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    int64_t N, C, S;
    coefficients(x.shape(), N, C, S);
    if (dout.shape() != x.shape())
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(x.shape()));
    din[0]->resize(x.shape());
    const float* dy = dout.data();
    float* dx = din[0]->data();
    const float* a = mul_.data();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelMin && !omp_in_parallel())
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t o = (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) dx[o + s] = dy[o + s] * a[c];
      }
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape&) const override {
    return inputs.empty() ? 0 : 2 * shape_numel(inputs[0]);
  }

 private:
  // y = x * mul[c] + add[c], recomputed from the current params on every call (cheap, [C]).
  void coefficients(const Shape& s, int64_t& N, int64_t& C, int64_t& S) {
    if (s.size() < 2) fail(type(), "expects an input [N, C, ...] of rank >= 2, got " + shape_str(s));
    N = s[0];
    C = s[1];
    S = prod(s, 2, s.size());
    const Param *m = param("mean"), *v = param("var"), *g = param("scale"), *b = param("shift");
    if (!m || !v || !g || !b) fail(type(), "forward called before infer (no statistics)");
    for (const Param* p : {m, v, g, b})
      if (p->value.numel() != C)
        fail(type(), "parameter '" + p->name + "' is " + shape_str(p->value.shape()) +
                         " but the input " + shape_str(s) + " has " + std::to_string(C) +
                         " channels");
    mul_.resize(static_cast<size_t>(C));
    add_.resize(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const double k = static_cast<double>(g->value[c]) / std::sqrt(static_cast<double>(v->value[c]) + eps_);
      mul_[c] = static_cast<float>(k);
      add_[c] = static_cast<float>(b->value[c] - k * m->value[c]);
    }
  }

  double eps_ = 1e-5;
  std::vector<float> mul_, add_;
};

}  // namespace

std::unique_ptr<Layer> make_batchnorm(const Attrs& a) { return std::make_unique<BatchNorm>(a); }

}  // namespace deftnn::ops
