// The convolution layer (internal header: the Plan and SVE code reuse its geometry).
#pragma once
#include <string>
#include <vector>

#include "deftnn/layer.h"
#include "ops/common.h"
#include "ops/im2col.h"

namespace deftnn::ops {

// 2-D convolution, NCHW, as im2col + sgemm per image and group (Caffe's formulation):
// Y_g[Og, OH*OW] = W_g[Og, K] * col_g[K, OH*OW] (+ bias), K = C/groups * kh * kw.
class Conv final : public Layer {
 public:
  explicit Conv(const Attrs& a);
  std::string type() const override { return "conv"; }
  Shape infer(const std::vector<Shape>& inputs) override;
  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) override;
  void backward(const std::vector<const Tensor*>& in, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext& ctx) override;
  void init_params(Rng& rng) override;
  int64_t flops(const std::vector<Shape>& inputs, const Shape& output) const override;

  // The per-group geometry for an input [N, C, H, W]; validates and throws naming the layer.
  ConvGeom geometry(const Shape& in) const;
  int64_t out_channels() const { return out_; }
  int64_t groups() const { return groups_; }

 private:
  // Runs fn(n0, n1, thread) over chunks of `chunk` images, in parallel over the chunks when
  // `threads` > 1 (sgemm then runs single-threaded inside the region).
  template <class Fn>
  void for_chunks(int64_t N, int64_t chunk, int threads, Fn&& fn);
  int plan_threads(int64_t N, double flops_per_image) const;
  // Images per GEMM: small per-image GEMMs (few output positions) are batched side by side into
  // one [K, chunk * OH*OW] column matrix so that packing is amortised and the GEMM is wider.
  static int64_t plan_chunk(const ConvGeom& g, int64_t N, int threads);
  const Tensor& weight_checked(const ConvGeom& g);

  int64_t out_ = 0, groups_ = 1;
  HW kernel_, stride_{1, 1}, dilation_{1, 1};
  Pads pads_;
  bool bias_ = true;
  std::string filler_;
  double weight_std_ = 0.01, bias_value_ = 0.0;
  std::vector<Scratch> col_, dcol_, dw_, ybuf_;   // per thread
};

}  // namespace deftnn::ops
