// The convolution layer (internal header: the Plan and SVE code reuse its geometry).
#pragma once
#include <string>
#include <vector>

#include "deftnn/layer.h"
#include "gemm/winograd.h"
#include "ops/common.h"
#include "ops/fission_weights.h"
#include "ops/im2col.h"
#include "ops/sparse_weights.h"

namespace deftnn::ops {

// 2-D convolution, NCHW, as im2col + sgemm per image and group (Caffe's formulation):
// Y_g[Og, OH*OW] = W_g[Og, K] * col_g[K, OH*OW] (+ bias), K = C/groups * kh * kw.
//
// Synapse vector elimination (paper §4.1.1): with the attribute `retained` (a list of K' * groups
// ints, groups concatenated; group g's K' entries are original column-matrix rows in [0, K), no
// repeats within a group) the weight is the truncated, scaled [O, K'] matrix whose column p of
// group g multiplies original row retained[g * K' + p]. im2col then writes only those K' rows
// (im2col_rows, no separate gather pass) and the dense GEMM runs on K'. Backward uses the same
// index: dW is [O, K'] and the input gradient receives nothing through discarded rows. Every
// group keeps the same count K' (the optimiser pads groups to match).
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
  void invalidate() override { drop_packed(); }
  unsigned fused_output_caps() const override { return kFuseRelu | kFuseResidual | kFuseSlice; }
  const FissionSetting& fission() const { return fission_; }

  // The per-group geometry for an input [N, C, H, W]; validates and throws naming the layer.
  ConvGeom geometry(const Shape& in) const;
  int64_t out_channels() const { return out_; }
  int64_t groups() const { return groups_; }
  bool eliminated() const { return !retained_.empty(); }
  // GEMM depth per group: K' when eliminated, else g.rows().
  int64_t depth(const ConvGeom& g) const { return eliminated() ? kept_ : g.rows(); }
  int64_t pair_channels(const ConvGeom& g) const;
  int64_t pair_tap_kw(const ConvGeom& g) const;

 private:
  // Runs fn(n0, n1, thread) over chunks of `chunk` images, in parallel over the chunks when
  // `threads` > 1 (sgemm then runs single-threaded inside the region).
  template <class Fn>
  void for_chunks(int64_t N, int64_t chunk, int threads, Fn&& fn);
  int plan_threads(int64_t N, double flops_per_image) const;
  // Images per GEMM: small per-image GEMMs (few output positions) are batched side by side into
  // one [K, chunk * OH*OW] column matrix so that packing is amortised and the GEMM is wider.
  // pa: the direct kernel's packed weights of group 0 (null: im2col + sgemm).
  static int64_t plan_chunk(const ConvGeom& g, int64_t K, int64_t N, int threads,
                            const FissionPackedA* pa = nullptr);
  const Tensor& weight_checked(const ConvGeom& g);
  Shape weight_shape(const ConvGeom& g) const;
  // Column matrix of image xg (group gi) at col, rows ld apart: the retained rows when
  // eliminated, else the full matrix (ident: a copy of the input).
  void build_columns(const ConvGeom& g, bool ident, int64_t gi, const float* xg, float* col,
                     int64_t ld) const;

  int64_t out_ = 0, groups_ = 1;
  HW kernel_, stride_{1, 1}, dilation_{1, 1};
  Pads pads_;
  bool bias_ = true;
  std::string filler_;
  double weight_std_ = 0.01, bias_value_ = 0.0;
  std::vector<int64_t> retained_;   // elimination: groups x K' original rows (empty: dense)
  std::vector<std::vector<int64_t>> retained_by_group_;   // the same, one list per group
  int64_t kept_ = 0;                // K' per group
  std::vector<Scratch> col_, dcol_, dw_, ybuf_;   // per thread
  FissionSetting fission_;          // inference weight format (f32: plain sgemm)
  FissionWeightCache packed_;       // one FissionPackedA per group
  // 3x3 stride-1 inference of a frozen model, fp32, a software-widened format or native bf16
  // (bf16: Winograd's bf16 variant): Winograd F(2x2, 3x3) where winograd_policy() picks it for
  // this geometry and batch (see use_winograd).
  bool use_winograd(const ConvGeom& g, int64_t N, bool bf16) const;
  std::vector<gemm::WinogradWeights> wino_;   // per group, transformed on first use
  const float* wino_key_ = nullptr; // the weight data they were built from
  FissionSetting wino_setting_;     // and the format they were widened from (f32: none)
  // A software-widened format on an FMA-bound conv (see forward): the weights widened once
  // from the format, as the fission kernels would multiply by them, for the fp32 direct
  // kernels or Winograd. Returns them (groups x rows x K), made again when the weights or the
  // format changed.
  const float* widened_once(const ConvGeom& g, const float* w);
  std::vector<float> wide_w_;
  const float* wide_key_ = nullptr;
  FissionSetting wide_setting_;
  // Pruned weights in CSR for the sparse inference path (forward_sparse: a direct sparse conv).
  SparseWeightCache sparse_;
  static bool sparse_direct(const ConvGeom& g);
  void forward_sparse(const std::vector<CsrMatrix>& sp, const ConvGeom& g, const Tensor& x,
                      const float* b, const float* res, bool relu, float* y, int64_t ystride,
                      const std::string& fused);
  // sparse_'s matrices with element offsets into the (padded) image for column indices; made
  // again when the geometry or the matrices change.
  std::vector<CsrMatrix> sparse_off_;
  int64_t sparse_off_plane_ = 0, sparse_off_row_ = 0;
  uint64_t sparse_off_gen_ = 0;
  void drop_packed() {
    sparse_off_.clear();
    sparse_.invalidate();
    packed_.invalidate();
    wino_.clear();
    wino_key_ = nullptr;
    wide_w_.clear();
    wide_key_ = nullptr;
  }

 protected:
  void attrs_changed(const std::string& key) override;
};

}  // namespace deftnn::ops
