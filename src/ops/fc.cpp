// Fully connected (inner product): Y[N, O] = X[N, I] * W[O, I]^T + b.
//
// Synapse vector elimination (paper §4.1.1): with the attribute `retained` (K' distinct input
// indices in [0, I)) the weight is the truncated, scaled [O, K'] matrix whose column p
// multiplies input feature retained[p], and Y = X' * W'^T + b where X' [N, K'] holds only the
// retained columns of X. The fp32 forward never builds X': the GEMM's packing step reads the
// retained columns of X through the index (sgemm_gather / sgemm_packed_gather, gemm/pack.h), as
// im2col does for convolution; so does the fission GEMM's (fission_gemm's bkidx). (A separate
// gather pass cost a frozen LeNet ip1 with 792 of 800 inputs retained ~20% over the dense layer
// at batch 32.) The native bf16 row-strip kernel and backward still gather X' (N * K' floats,
// 1/O of the weight traffic); discarded input features get a zero gradient.
//
// Near-compute data fission (issue 4): with the attribute `format` (see ops/fission_weights.h) an
// inference forward packs the (possibly truncated) weight W [O, K] once in that format and
// computes Y^T [O, N] = W X^T with fission_gemm (trans_b, B = X or X'), written straight into Y
// at N == 1 and transposed from a scratch buffer otherwise.
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "deftnn/prune.h"
#include "gemm/sbgemm_pairs.h"
#include "ops/common.h"
#include "ops/fission_weights.h"
#include "ops/sparse_weights.h"
#include "ops/transpose_rows.h"
#include "ops/layers.h"

namespace deftnn::ops {
namespace {

class FC final : public Layer {
 public:
  explicit FC(const Attrs& a) : Layer(a) {
    const std::string t = "fc";
    a.check_keys(t, {"out_features", "bias", "weight_filler", "weight_std", "bias_value", "retained",
                     "format", "fission_mode", "rounding"});
    fission_ = parse_fission_attrs(a, t);
    out_ = a.get_int("out_features");
    const int64_t bias = a.get_int("bias", 1);
    filler_ = a.get_str("weight_filler", "xavier");
    weight_std_ = a.get_float("weight_std", 0.01);
    bias_value_ = a.get_float("bias_value", 0.0);
    if (out_ <= 0) fail(t, "out_features must be positive, got " + std::to_string(out_));
    if (bias != 0 && bias != 1) fail(t, "attribute 'bias' must be 0 or 1, got " + std::to_string(bias));
    bias_ = bias == 1;
    check_filler(t, filler_);
    if (weight_std_ < 0) fail(t, "weight_std must be non-negative");
    if (a.has("retained")) {
      retained_ = a.get_ints("retained");
      if (retained_.empty()) fail(t, "attribute 'retained' is empty (keep at least one input)");
    }
  }
  std::string type() const override { return "fc"; }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    const Shape& s = inputs[0];
    if (s.size() < 2) fail(type(), "expects an input [N, ...] of rank >= 2, got " + shape_str(s));
    check_positive_dims(type(), s);
    const int64_t I = prod(s, 1, s.size());
    std::string why = "input has " + std::to_string(I) + " features per sample";
    if (!retained_.empty()) {
      std::vector<char> seen(static_cast<size_t>(I), 0);
      for (const int64_t r : retained_) {
        if (r < 0 || r >= I)
          fail(type(), "attribute 'retained' has input " + std::to_string(r) + " outside [0, " +
                           std::to_string(I) + ") for input " + shape_str(s));
        if (seen[r]) fail(type(), "attribute 'retained' repeats input " + std::to_string(r));
        seen[r] = 1;
      }
      why += ", " + std::to_string(retained_.size()) + " retained";
    }
    ensure_param(*this, "weight", {out_, depth(I)}, true, 1.0f, 1.0f, why);
    if (bias_ || param("bias")) ensure_param(*this, "bias", {out_}, true, 2.0f, 0.0f, "");
    invalidate();
    return {s[0], out_};
  }

  void invalidate() override {
    sparse_.invalidate();
    packed_.invalidate();
    wpack_ = PackedA();
    rows12_ = gemm::Bf16RowStrips();
    rows12_key_ = nullptr;
  }

  // A ReLU that follows the layer runs in its output pass (Model's fusion plan, inference of a
  // frozen model): in the transposing store of the small-batch and sparse paths, else over Y
  // right after the GEMM while it is in cache. Same float operations as the relu layer.
  unsigned fused_output_caps() const override { return kFuseRelu; }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) override {
    relu_out_ = ctx.fused && ctx.fused->relu;
    relu_done_ = false;
    forward_unfused(in, out, ctx);
    if (relu_out_ && kernel_report_enabled()) last_kernel_ += ", ReLU fused";
    if (relu_out_ && !relu_done_) {
      float* y = out.data();
      parallel_ranges(out.numel(),
                      [&](int64_t lo, int64_t hi) { finish(y + lo, nullptr, true, hi - lo); });
    }
  }

  void forward_unfused(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) {
    const Tensor& x = input(type(), in, 0);
    int64_t N, I;
    const float* w = weight(x, N, I);
    const Param* bp = param("bias");
    out.resize({N, out_});
    float* y = out.data();
    if (ctx.training) invalidate();
    if (kernel_report_enabled()) {
      const std::string elim = retained_.empty() ? "" : ", " + std::to_string(depth(I)) + " of " +
                                                            std::to_string(I) + " inputs retained";
      if (fission_.active() && !ctx.training && row_strips(N))
        last_kernel_ = std::string("bf16 GEMM Y^T = W X^T, weights in 12-row K-pair strips "
                                   "packed once, sbgemm_pairs_12x32__avx512bf16") + elim;
      else if (fission_.active() && !ctx.training)
        last_kernel_ = std::string("fission GEMM Y^T = W X^T, ") + format_name(fission_.format) +
                       " weights packed once, " +
                       fission_kernel_name(packed_.get(fission_, w, 1, out_, depth(I))[0], fission_.mode) + elim;
      else if (N == 1)
        last_kernel_ = std::string("gemv (weights streamed once, not packed)") + elim;
      else if (N <= kSmallBatch)
        last_kernel_ = std::string("sgemm Y^T = W X^T, weights as A") +
                       (ctx.frozen ? " packed once (frozen model) " : " packed per call ") +
                       active_gemm_kernel() + elim;
      else
        last_kernel_ = std::string("sgemm Y = X W^T ") + active_gemm_kernel() + elim;
    }
    if (fission_.active() && !ctx.training) {
      forward_fission(x, N, I, w, bp ? bp->value.data() : nullptr, y);
      return;
    }
    // A pruned fc of a frozen model at inference: Y^T = W_csr X^T by spmm where the sparse
    // policy picks it for the weight density (include/deftnn/prune.h).
    if (!ctx.training && ctx.frozen) {
      if (const std::vector<CsrMatrix>* sp = sparse_.get("fc", w, 1, out_, depth(I))) {
        forward_sparse((*sp)[0], x, N, I, bp ? bp->value.data() : nullptr, y);
        return;
      }
    }
    const int64_t K = depth(I);
    if (N > 1 && N <= kSmallBatch) {
      // Small batch: make the weights the GEMM's A operand (Y^T = W X^T). A is packed in
      // L2-sized blocks as it streams, and the small X^T panel stays in L1 for every weight row;
      // the other way round every call re-packs the whole weight matrix as B for only N rows
      // (~55 GFLOP/s at N = 16 on AlexNet's fc6, against ~300 this way).
      // In a frozen model (inference session) W is packed once, not on every call: packing
      // the 4096 x 9216 fc6 for 16 rows took 40% of the layer's time.
      float* yt = ytbuf_.get(out_ * N);
      if (ctx.frozen) {
        if (wpack_.empty() || wpack_.isa() != active_isa() || wpack_.rows() != out_ ||
            wpack_.depth() != K)
          wpack_ = PackedA(false, out_, K, w, K);
        sgemm_packed_gather(wpack_, true, N, 1.0f, x.data(), I, kidx(), 0.0f, yt, N);
      } else {
        sgemm_gather(false, true, out_, N, K, 1.0f, w, K, nullptr, x.data(), I, kidx(), 0.0f, yt,
                     N);
      }
      store_transposed(yt, N, bp ? bp->value.data() : nullptr, y);
      return;
    }
    // The bias first, then the GEMM adds to it (beta = 1). (Only here: the small-batch path
    // adds it in its transposing store; filling Y with it there too cost LeNet's ip1 at batch
    // 32 a 64 KB pass per call.)
    float beta = 0.0f;
    if (bp) {
      const float* b = bp->value.data();
      for (int64_t n = 0; n < N; ++n) std::copy(b, b + out_, y + n * out_);
      beta = 1.0f;
    }
    sgemm_gather(false, true, N, out_, K, 1.0f, x.data(), I, kidx(), w, K, nullptr, beta, y, out_);
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    const Tensor& x = input(type(), in, 0);
    int64_t N, I;
    const float* w = weight(x, N, I);
    if (dout.shape() != Shape{N, out_})
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str({N, out_}));
    const float* dy = dout.data();
    const int64_t K = depth(I);
    Param* wp = param("weight");
    if (wp->trainable && wp->grad.numel() == wp->value.numel())
      sgemm(true, false, out_, K, N, 1.0f, dy, out_, operand(x, N, I), K, 1.0f, wp->grad.data(), K);
    Param* bp = param("bias");
    if (bp && bp->trainable && bp->grad.numel() == out_) {
      float* db = bp->grad.data();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < out_; ++o) db[o] += dy[n * out_ + o];
    }
    if (!din.empty() && din[0]) {
      din[0]->resize(x.shape());
      float* dx = din[0]->data();
      if (retained_.empty()) {
        sgemm(false, false, N, I, out_, 1.0f, dy, out_, w, I, 0.0f, dx, I);
      } else {
        // dX' = dY * W' [N, K'], scattered to the retained columns; the rest stay zero.
        float* dxs = dbuf_.get(N * K);
        sgemm(false, false, N, K, out_, 1.0f, dy, out_, w, K, 0.0f, dxs, K);
        std::fill(dx, dx + N * I, 0.0f);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < K; ++p) dx[n * I + retained_[p]] = dxs[n * K + p];
      }
    }
  }

  void init_params(Rng& rng) override {
    Param* w = param("weight");
    if (!w) fail(type(), "init_params called before infer (no weight yet)");
    fill_weight(w->value, filler_, weight_std_, w->value.dim(1), rng);
    if (Param* b = param("bias")) b->value.fill(static_cast<float>(bias_value_));
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape& output) const override {
    if (inputs.empty() || inputs[0].empty() || output.size() != 2) return 0;
    return 2 * output[0] * output[1] * depth(prod(inputs[0], 1, inputs[0].size()));
  }

 protected:
  void attrs_changed(const std::string& key) override {
    if (!is_fission_attr(key)) Layer::attrs_changed(key);
    fission_ = parse_fission_attrs(attrs_, type());
    invalidate();
  }

 private:
  // Native bf16 at a batch of whole 32-sample panels (deterministic rounding): the weights
  // broadcast by the 12 x 32 bf16 tile (gemm/sbgemm_pairs.h) instead of the fission tile's 32
  // weight rows as vectors x 12 samples, whose first pass over each strip waited on DRAM for
  // 128 bytes of weights per 24 vdpbf16ps (48 this way). The same bf16 products summed in the
  // same order: bit for bit the fission path's result. CaffeNet's fc6 / fc7 shapes, 2 threads,
  // alternated runs: batch 32 0.82x / 0.91x, 64 0.87x / 0.85x; but batch 24 1.05x / 1.22x, 48
  // 1.09x / 0.99x, 16 0.91x / 1.03x (a part-empty panel computes 32 columns for fewer, or runs
  // the 12-accumulator half tile). So: whole panels, or nearly.
  bool row_strips(int64_t N) const {
    return N >= 32 && (N % 32 == 0 || N % 32 >= 28) && fission_.format == Format::bf16 &&
           fission_.mode != FissionMode::offchip && fission_.rounding != Rounding::stochastic &&
           active_isa() == Isa::avx512_bf16;
  }

  void forward_fission(const Tensor& x, int64_t N, int64_t I, const float* w, const float* b,
                       float* y) {
    const int64_t K = depth(I), O = out_;
    if (row_strips(N)) {
      // (Its K-pair packer reads X' [N, K'] rows: the one path that still gathers them first.)
      const float* X = operand(x, N, I);
      if (rows12_.empty() || rows12_key_ != w || !(rows12_setting_ == fission_) ||
          rows12_.rows() != O || rows12_.depth() != K) {
        rows12_ = gemm::Bf16RowStrips(w, O, K, fission_.rounding);
        rows12_key_ = w;
        rows12_setting_ = fission_;
      }
      float* yt = ytbuf_.get(O * N);
      gemm::bf16_row_strips_gemm(rows12_, N, X, K, yt);
      store_transposed(yt, N, b, y);
      return;
    }
    const FissionPackedA& a = packed_.get(fission_, w, 1, O, K)[0];
    if (N == 1) {
      // Y^T [O, 1] is Y [1, O].
      float beta = 0.0f;
      if (b) {
        std::copy(b, b + O, y);
        beta = 1.0f;
      }
      fission_gemm(a, true, 1, 1.0f, x.data(), I, beta, y, 1, fission_.mode, kidx());
      return;
    }
    float* yt = ytbuf_.get(O * N);
    fission_gemm(a, true, N, 1.0f, x.data(), I, 0.0f, yt, N, fission_.mode, kidx());
    store_transposed(yt, N, b, y);
  }

  // y [N, O] = yt^T + bias, from yt [O, N] (bias may be null).
  // Y[n, o] = Yt[o, n] + b[o], and the fused ReLU if there is one (ops/transpose_rows.h).
  void store_transposed(const float* yt, int64_t N, const float* b, float* y) {
    const int64_t O = out_;
    const bool relu = relu_out_;
    const Isa isa = active_isa();
    const int64_t blocks = (O + 15) / 16;   // 16 output features a block
#pragma omp parallel for schedule(static) if (N * O >= kParallelMin && !omp_in_parallel())
    for (int64_t q = 0; q < blocks; ++q)
      transpose_bias(isa, yt, O, N, b, relu, y, 16 * q, std::min(O, 16 * q + 16));
    relu_done_ = relu;
  }

  // Y[N, O] = X' W^T + b with W in CSR: one sample, a sparse matrix-vector product into Y; a
  // batch, X'^T [K', N] (transposed once) times W, then transposed into Y with the bias.
  void forward_sparse(const CsrMatrix& a, const Tensor& x, int64_t N, int64_t I, const float* b,
                      float* y) {
    const int64_t K = depth(I);
    const float* xs = operand(x, N, I);
    if (kernel_report_enabled()) {
      char dens[32];
      std::snprintf(dens, sizeof dens, "%.1f%%", 100.0 * a.density());
      last_kernel_ = std::string("CSR spmm Y^T = W X^T (weight density ") + dens + ") " +
                     active_spmm_kernel() +
                     (retained_.empty() ? ""
                                        : ", " + std::to_string(K) + " of " + std::to_string(I) +
                                              " inputs retained");
    }
    if (N == 1) {
      spmm(a, xs, 1, 1, y, 1);
      if (b)
        for (int64_t o = 0; o < out_; ++o) y[o] += b[o];
      return;
    }
    float* xt = dbuf_.get(K * N);   // X'^T [K', N]
    transpose_bias(active_isa(), xs, N, K, nullptr, false, xt, 0, N);
    float* yt = ytbuf_.get(out_ * N);
    spmm(a, xt, N, N, yt, N);
    store_transposed(yt, N, b, y);
  }

  const float* weight(const Tensor& x, int64_t& N, int64_t& I) {
    const Shape& s = x.shape();
    if (s.size() < 2) fail(type(), "expects an input [N, ...] of rank >= 2, got " + shape_str(s));
    N = s[0];
    I = prod(s, 1, s.size());
    Param* w = param("weight");
    if (!w) fail(type(), "forward called before infer (no weight)");
    if (w->value.shape() != Shape{out_, depth(I)})
      fail(type(), "weight is " + shape_str(w->value.shape()) + " but the input " + shape_str(s) +
                       " needs " + shape_str({out_, depth(I)}));
    return w->value.data();
  }

  int64_t depth(int64_t I) const {
    return retained_.empty() ? I : static_cast<int64_t>(retained_.size());
  }

  // The index of X's retained columns for sgemm_gather (null when dense).
  const int64_t* kidx() const { return retained_.empty() ? nullptr : retained_.data(); }

  // X itself, or X' [N, K'] = the retained columns of X, gathered (fission and backward).
  const float* operand(const Tensor& x, int64_t N, int64_t I) {
    if (retained_.empty()) return x.data();
    const int64_t K = depth(I);
    const float* xd = x.data();
    const int64_t* r = retained_.data();
    float* xs = xbuf_.get(N * K);
#pragma omp parallel for schedule(static) if (N * K >= kParallelMin && N > 1 && !omp_in_parallel())
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = xd + n * I;
      float* o = xs + n * K;
      for (int64_t p = 0; p < K; ++p) o[p] = xr[r[p]];
    }
    return xs;
  }

  int64_t out_ = 0;
  bool bias_ = true;
  std::string filler_;
  double weight_std_ = 0.01, bias_value_ = 0.0;
  std::vector<int64_t> retained_;   // elimination: K' input features (empty: dense)
  bool relu_out_ = false;    // this call's output gets the fused ReLU
  bool relu_done_ = false;   // ... and store_transposed applied it
  Scratch xbuf_, dbuf_, ytbuf_;
  static constexpr int64_t kSmallBatch = 64;   // up to this batch, weights are the GEMM's A
  FissionSetting fission_;       // inference weight format (f32: plain sgemm)
  FissionWeightCache packed_;
  SparseWeightCache sparse_;     // pruned weights in CSR (forward_sparse)
  PackedA wpack_;                // fp32 W packed as the GEMM's A, kept while the model is frozen
  gemm::Bf16RowStrips rows12_;    // native bf16 at batches of whole 32-sample panels (row_strips)
  const float* rows12_key_ = nullptr;
  FissionSetting rows12_setting_;
};

}  // namespace

std::unique_ptr<Layer> make_fc(const Attrs& a) { return std::make_unique<FC>(a); }

}  // namespace deftnn::ops
