// Local response normalisation across channels (AlexNet / Caffe / ONNX):
//   scale_c = k + alpha / size * sum_{c' in [c - (size-1)/2, c + size/2]} x_{c'}^2,  y = x * scale^-beta.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "ops/common.h"
#include "ops/layers.h"
#include "ops/lrn_rows.h"

namespace deftnn::ops {
namespace {

constexpr int64_t kBlock = 256;   // spatial positions handled together (running sums over c)

class LRN final : public Layer {
 public:
  explicit LRN(const Attrs& a) : Layer(a) {
    const std::string t = "lrn";
    a.check_keys(t, {"size", "alpha", "beta", "k"});
    size_ = a.get_int("size", 5);
    alpha_ = a.get_float("alpha", 1e-4);
    beta_ = a.get_float("beta", 0.75);
    k_ = a.get_float("k", 1.0);
    if (size_ <= 0) fail(t, "size must be positive, got " + std::to_string(size_));
    if (k_ <= 0) fail(t, "k must be positive (the scale must stay > 0), got " + std::to_string(k_));
    if (alpha_ < 0) fail(t, "alpha must be non-negative, got " + std::to_string(alpha_));
  }
  std::string type() const override { return "lrn"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    check_shape(inputs[0]);
    return inputs[0];
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) override {
    const Tensor& x = input(type(), in, 0);
    check_shape(x.shape());
    out.resize(x.shape());
    if (!ctx.training && beta_ == 0.75) {
      // Inference: one pass, no scale tensor (lrn_rows.h). Two passes over a scale tensor
      // (written, then read with the output) cost ~4.6 cycles an element: cifarnet's norm1
      // 0.6 ms at batch 64, one thread.
      scale_shape_.clear();   // backward recomputes the scale from x
      const Shape& sh = x.shape();
      const int64_t N = sh[0], C = sh[1], S = prod(sh, 2, sh.size());
      const int64_t pre = (size_ - 1) / 2, post = size_ - 1 - pre;
      const float a = static_cast<float>(alpha_ / static_cast<double>(size_));
      const float k = static_cast<float>(k_);
      const int64_t nblk = (S + kBlock - 1) / kBlock;
      const Isa isa = active_isa();
      const float* xd = x.data();
      float* y = out.data();
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S >= kParallelMin && !omp_in_parallel())
      for (int64_t n = 0; n < N; ++n)
        for (int64_t b = 0; b < nblk; ++b)
          lrn_b075(isa, xd + n * C * S, C, S, pre, post, a, k, b * kBlock,
                   std::min(S, (b + 1) * kBlock), y + n * C * S);
      return;
    }
    compute_scale(x);
    const int64_t n = x.numel();
    const float* xd = x.data();
    const float* s = scale_.data();
    float* y = out.data();
    const float nb = static_cast<float>(-beta_);
    const bool b075 = beta_ == 0.75;
#pragma omp parallel for schedule(static) if (n >= kParallelMin && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) y[i] = xd[i] * pow_neg_beta(s[i], nb, b075);
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    check_shape(x.shape());
    if (dout.shape() != x.shape() || out.shape() != x.shape())
      fail(type(), "dout " + shape_str(dout.shape()) + " / out " + shape_str(out.shape()) +
                       " do not match the input " + shape_str(x.shape()));
    if (scale_shape_ != x.shape()) compute_scale(x);
    din[0]->resize(x.shape());
    const Shape& sh = x.shape();
    const int64_t N = sh[0], C = sh[1], S = prod(sh, 2, sh.size());
    const int64_t pre = (size_ - 1) / 2, post = size_ - 1 - pre;
    const float* xd = x.data();
    const float* yd = out.data();
    const float* dy = dout.data();
    const float* sc = scale_.data();
    float* dx = din[0]->data();
    const float coef = static_cast<float>(2.0 * alpha_ * beta_ / static_cast<double>(size_));
    const float nb = static_cast<float>(-beta_);
    const bool b075 = beta_ == 0.75;
    const int64_t nblk = (S + kBlock - 1) / kBlock;
    // dx_j = dy_j scale_j^-beta - coef x_j sum_{i: j in window(i)} dy_i y_i / scale_i,
    // where j in window(i) <=> i in [j - post, j + pre].
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S >= kParallelMin && !omp_in_parallel())
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < nblk; ++b) {
        const int64_t s0 = b * kBlock, len = std::min(kBlock, S - s0);
        const int64_t base = n * C * S + s0;
        float acc[kBlock];
        std::fill(acc, acc + len, 0.0f);
        auto ratio_add = [&](int64_t c, float sign) {
          const int64_t o = base + c * S;
          for (int64_t s = 0; s < len; ++s) acc[s] += sign * dy[o + s] * yd[o + s] / sc[o + s];
        };
        for (int64_t c = 0; c < std::min(pre, C); ++c) ratio_add(c, 1.0f);
        for (int64_t j = 0; j < C; ++j) {
          if (j + pre < C) ratio_add(j + pre, 1.0f);
          if (j - post - 1 >= 0) ratio_add(j - post - 1, -1.0f);
          const int64_t o = base + j * S;
          for (int64_t s = 0; s < len; ++s)
            dx[o + s] = dy[o + s] * pow_neg_beta(sc[o + s], nb, b075) - coef * xd[o + s] * acc[s];
        }
      }
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape&) const override {
    return inputs.empty() ? 0 : shape_numel(inputs[0]) * 6;
  }

 private:
  static float pow_neg_beta(float s, float nb, bool b075) {
    if (b075) {
      const float r = std::sqrt(s);
      return 1.0f / (r * std::sqrt(r));
    }
    return std::pow(s, nb);
  }

  void check_shape(const Shape& s) const {
    if (s.size() < 3)
      fail(type(), "expects an input [N, C, ...] of rank >= 3, got " + shape_str(s));
    check_positive_dims(type(), s);
  }

  // scale_ = k + alpha/size * windowed sum of squares over channels (running sum along c).
  void compute_scale(const Tensor& x) {
    const Shape& sh = x.shape();
    const int64_t N = sh[0], C = sh[1], S = prod(sh, 2, sh.size());
    scale_.resize(sh);
    scale_shape_ = sh;
    const int64_t pre = (size_ - 1) / 2, post = size_ - 1 - pre;
    const float* xd = x.data();
    float* sc = scale_.data();
    const float a = static_cast<float>(alpha_ / static_cast<double>(size_)), k = static_cast<float>(k_);
    const int64_t nblk = (S + kBlock - 1) / kBlock;
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S >= kParallelMin && !omp_in_parallel())
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < nblk; ++b) {
        const int64_t s0 = b * kBlock, len = std::min(kBlock, S - s0);
        const int64_t base = n * C * S + s0;
        float acc[kBlock];
        std::fill(acc, acc + len, 0.0f);
        auto sq_add = [&](int64_t c, float sign) {
          const float* r = xd + base + c * S;
          for (int64_t s = 0; s < len; ++s) acc[s] += sign * r[s] * r[s];
        };
        // Window of c is [c - pre, c + post].
        for (int64_t c = 0; c < std::min(post, C); ++c) sq_add(c, 1.0f);
        for (int64_t c = 0; c < C; ++c) {
          if (c + post < C) sq_add(c + post, 1.0f);
          if (c - pre - 1 >= 0) sq_add(c - pre - 1, -1.0f);
          float* o = sc + base + c * S;
          for (int64_t s = 0; s < len; ++s) o[s] = k + a * std::max(acc[s], 0.0f);
        }
      }
  }

  int64_t size_ = 5;
  double alpha_ = 1e-4, beta_ = 0.75, k_ = 1.0;
  Tensor scale_;
  Shape scale_shape_;
};

}  // namespace

std::unique_ptr<Layer> make_lrn(const Attrs& a) { return std::make_unique<LRN>(a); }

}  // namespace deftnn::ops
