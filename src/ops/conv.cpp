#include "ops/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "deftnn/prune.h"
#include "gemm/spmm.h"
#include "ops/layers.h"

namespace deftnn::ops {

Conv::Conv(const Attrs& a) : Layer(a) {
  const std::string t = "conv";
  a.check_keys(t, {"out_channels", "kernel", "stride", "pad", "pads", "dilation", "groups", "bias",
                   "weight_filler", "weight_std", "bias_value", "retained", "format",
                   "fission_mode", "rounding"});
  fission_ = parse_fission_attrs(a, t);
  out_ = a.get_int("out_channels");
  kernel_ = get_hw(a, t, "kernel");
  stride_ = get_hw(a, t, "stride", {1, 1});
  dilation_ = get_hw(a, t, "dilation", {1, 1});
  pads_ = get_pads(a, t);
  groups_ = a.get_int("groups", 1);
  int64_t bias = a.get_int("bias", 1);
  filler_ = a.get_str("weight_filler", "xavier");
  weight_std_ = a.get_float("weight_std", 0.01);
  bias_value_ = a.get_float("bias_value", 0.0);
  if (out_ <= 0) fail(t, "out_channels must be positive, got " + std::to_string(out_));
  if (kernel_.h <= 0 || kernel_.w <= 0)
    fail(t, "kernel must be positive, got " + shape_str({kernel_.h, kernel_.w}));
  if (stride_.h <= 0 || stride_.w <= 0)
    fail(t, "stride must be positive, got " + shape_str({stride_.h, stride_.w}));
  if (dilation_.h <= 0 || dilation_.w <= 0)
    fail(t, "dilation must be positive, got " + shape_str({dilation_.h, dilation_.w}));
  if (groups_ <= 0) fail(t, "groups must be positive, got " + std::to_string(groups_));
  if (out_ % groups_ != 0)
    fail(t, "out_channels " + std::to_string(out_) + " is not divisible by groups " +
                std::to_string(groups_));
  if (bias != 0 && bias != 1) fail(t, "attribute 'bias' must be 0 or 1, got " + std::to_string(bias));
  bias_ = bias == 1;
  check_filler(t, filler_);
  if (weight_std_ < 0) fail(t, "weight_std must be non-negative");
  if (a.has("retained")) {
    retained_ = a.get_ints("retained");
    const int64_t n = static_cast<int64_t>(retained_.size());
    if (n == 0 || n % groups_ != 0)
      fail(t, "attribute 'retained' has " + std::to_string(n) +
                  " entries; it needs the same positive count for each of the " +
                  std::to_string(groups_) + " group(s)");
    kept_ = n / groups_;
    for (int64_t gi = 0; gi < groups_; ++gi)
      retained_by_group_.emplace_back(retained_.begin() + gi * kept_, retained_.begin() + (gi + 1) * kept_);
  }
}

void Conv::attrs_changed(const std::string& key) {
  if (!is_fission_attr(key)) Layer::attrs_changed(key);
  fission_ = parse_fission_attrs(attrs_, type());
  drop_packed();
}

ConvGeom Conv::geometry(const Shape& s) const {
  const std::string t = type();
  check_rank(t, s, 4);
  check_positive_dims(t, s);
  const int64_t C = s[1], H = s[2], W = s[3];
  if (C % groups_ != 0)
    fail(t, "input channels " + std::to_string(C) + " are not divisible by groups " +
                std::to_string(groups_) + " (input " + shape_str(s) + ")");
  const int64_t ekh = dilation_.h * (kernel_.h - 1) + 1, ekw = dilation_.w * (kernel_.w - 1) + 1;
  if (H + pads_.t + pads_.b < ekh || W + pads_.l + pads_.r < ekw) {
    std::string msg = "input " + shape_str(s) + " is smaller than ";
    msg += (dilation_.h > 1 || dilation_.w > 1) ? "dilated kernel " + shape_str({ekh, ekw})
                                                : "kernel " + shape_str({ekh, ekw});
    if (!pads_.zero()) msg += " even with pads " + pads_.str();
    fail(t, msg);
  }
  ConvGeom g;
  g.C = C / groups_;
  g.H = H;
  g.W = W;
  g.kh = kernel_.h;
  g.kw = kernel_.w;
  g.sh = stride_.h;
  g.sw = stride_.w;
  g.pt = pads_.t;
  g.pl = pads_.l;
  g.dh = dilation_.h;
  g.dw = dilation_.w;
  g.OH = (H + pads_.t + pads_.b - ekh) / stride_.h + 1;
  g.OW = (W + pads_.l + pads_.r - ekw) / stride_.w + 1;
  return g;
}

Shape Conv::weight_shape(const ConvGeom& g) const {
  if (eliminated()) return {out_, kept_};
  return {out_, g.C, g.kh, g.kw};
}

Shape Conv::infer(const std::vector<Shape>& inputs) {
  check_num_inputs(type(), inputs, 1);
  const ConvGeom g = geometry(inputs[0]);
  std::string why = "input has " + std::to_string(inputs[0][1]) + " channels";
  if (eliminated()) {
    const int64_t K = g.rows();
    if (kept_ > K)
      fail(type(), "attribute 'retained' keeps " + std::to_string(kept_) +
                       " rows per group but the input " + shape_str(inputs[0]) + " gives K=" +
                       std::to_string(K));
    for (int64_t gi = 0; gi < groups_; ++gi) {
      std::vector<char> seen(static_cast<size_t>(K), 0);
      for (int64_t p = 0; p < kept_; ++p) {
        const int64_t r = retained_[gi * kept_ + p];
        if (r < 0 || r >= K)
          fail(type(), "attribute 'retained' has row " + std::to_string(r) + " outside [0, " +
                           std::to_string(K) + ") for input " + shape_str(inputs[0]));
        if (seen[r]) fail(type(), "attribute 'retained' repeats row " + std::to_string(r) +
                                      " in group " + std::to_string(gi));
        seen[r] = 1;
      }
    }
    why += ", " + std::to_string(kept_) + " of K=" + std::to_string(K) + " rows retained per group";
  }
  ensure_param(*this, "weight", weight_shape(g), true, 1.0f, 1.0f, why);
  if (bias_ || param("bias")) ensure_param(*this, "bias", {out_}, true, 2.0f, 0.0f, "");
  drop_packed();
  return {inputs[0][0], out_, g.OH, g.OW};
}

const Tensor& Conv::weight_checked(const ConvGeom& g) {
  Param* w = param("weight");
  if (!w) fail(type(), "forward called before infer (no weight)");
  const Shape want = weight_shape(g);
  if (w->value.shape() != want)
    fail(type(), "weight is " + shape_str(w->value.shape()) + " but the input needs " +
                     shape_str(want));
  return w->value;
}

// Native bf16 weights of a dense conv in K pairs read from a pair copy of the image: channel
// pairs (FissionPackedA::conv_channel_pairs), or for a small odd C with a kernel at least 5
// wide (dilation 1) tap pairs (conv_tap_pairs, pair_tap_kw), which pad kw to even (a seventh
// or less of K at kw >= 7) where channel pairs would pad C by a third. Hot, 2 threads, one
// image (K-pair panels packed from the image per call / channel pairs / tap pairs): CaffeNet
// conv1 (11x11 s4) 0.362 / 0.40 / 0.352 ms, in the network 0.56 against 0.37-0.42 in tap
// pairs; ResNet's 7x7 s2 0.461 / 0.499 / 0.433; cifarnet's 5x5 (32x32) 0.039 / 0.034 / 0.033;
// LeNet's (C = 1) 0.0113 / 0.0087 / 0.0088. At kw = 3 channel pairs beat the panels (224 -> 112,
// stride 2: 0.22 against 0.15 ms; 112 wide 0.21 against 0.13; caches flushed 1.4x), except
// VGG's 224-wide stride-1 first layer hot (1.49 against 1.62 ms; flushed, even).
int64_t Conv::pair_channels(const ConvGeom& g) const { return eliminated() ? 0 : g.C; }

int64_t Conv::pair_tap_kw(const ConvGeom& g) const {
  return !eliminated() && g.C % 2 == 1 && g.C < 16 && g.kw >= 5 && g.dw == 1 ? g.kw : 0;
}

int Conv::plan_threads(int64_t N, double flops_per_image) const {
  const int nt = omp_get_max_threads();
  if (nt <= 1 || N <= 1 || omp_in_parallel()) return 1;
  // Large per-image GEMMs with fewer images than threads: let sgemm use the threads instead.
  if (N < nt && flops_per_image > 2e7) return 1;
  return static_cast<int>(std::min<int64_t>(nt, N));
}

int64_t Conv::plan_chunk(const ConvGeom& g, int64_t K, int64_t N, int threads,
                         const FissionPackedA* pa) {
  const int64_t P = g.cols();
  if (P >= 1024) return 1;
  // Native bf16 in channel pairs, a large GEMM per image: one image per call. Several images
  // of short rows ran on K-pair panels (conv_path) whose working set, like a several-image
  // copy, exceeds L2 while each strip of A passes over it; one image's pair copy (CaffeNet
  // conv3: 230 KiB) stays in L2 under the direct tile. CaffeNet batch 32, 2 threads, same
  // run: conv3 14.8 -> 12.2 ms, conv4 11.8 -> 9.8, conv5 8.3 -> 6.8; bf16 total 78 -> 71 ms.
  // (fp32 direct tiles: no difference, left batched.)
  if (pa && pa->channel_pair_taps() > 0 && 2.0 * pa->rows() * K * P >= 5e7) return 1;
  int64_t c = (1024 + P - 1) / P;
  c = std::min(c, (N + threads - 1) / threads);              // keep every thread busy
  c = std::min(c, std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, K * P)));
  return std::max<int64_t>(c, 1);
}

template <class Fn>
void Conv::for_chunks(int64_t N, int64_t chunk, int threads, Fn&& fn) {
  // Chunks of at most `chunk` images, as many as a multiple of the thread count and of nearly
  // equal size: 16 images of 13x13 in chunks of 7 were 7 + 7 | 2 on two threads (one thread
  // idle 40% of the time); now they are 4 + 4 | 4 + 4.
  int64_t nchunks = (N + chunk - 1) / chunk;
  if (threads > 1) nchunks = std::min(N, (nchunks + threads - 1) / threads * threads);
  auto first = [&](int64_t c) { return N * c / nchunks; };
  if (threads == 1) {
    for (int64_t c = 0; c < nchunks; ++c) fn(first(c), first(c + 1), 0);
  } else {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t c = 0; c < nchunks; ++c) fn(first(c), first(c + 1), t);
    }
  }
}

namespace {

// Writes image x's column matrix (one group) at col + offset, rows ld apart.
inline void columns(const ConvGeom& g, bool ident, const float* xg, float* col, int64_t ld) {
  if (!ident) {
    im2col(g, xg, col, ld);
    return;
  }
  const int64_t P = g.cols();
  for (int64_t r = 0; r < g.rows(); ++r)
    std::memcpy(col + r * ld, xg + r * P, sizeof(float) * static_cast<size_t>(P));
}

// Writes output plane o of group gi of image n from src (P values) with the bias, then the
// fused residual and ReLU (finish): the copy out of a side-by-side GEMM result.
struct PlaneOut {
  float* y;
  int64_t ystride, O, Og, P;
  const float* b;
  const float* res;
  bool relu;
  void operator()(const float* src, int64_t n, int64_t gi, int64_t o) const {
    float* dst = y + n * ystride + (gi * Og + o) * P;
    const float bv = b ? b[gi * Og + o] : 0.0f;
    for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + bv;
    if (res || relu) finish(dst, res ? res + (n * O + gi * Og + o) * P : nullptr, relu, P);
  }
};

}  // namespace

void Conv::build_columns(const ConvGeom& g, bool ident, int64_t gi, const float* xg, float* col,
                         int64_t ld) const {
  if (eliminated())
    im2col_rows(g, xg, retained_.data() + gi * kept_, kept_, col, ld);
  else
    columns(g, ident, xg, col, ld);
}

const float* Conv::widened_once(const ConvGeom& g, const float* w) {
  if (wide_key_ == w && wide_setting_ == fission_) return wide_w_.data();
  // Encoded as the fission kernels' packed weights, widened back; the packed copy is dropped
  // (the fp32 kernels pack the widened values, Winograd transforms them).
  const int64_t rows = out_ / groups_, per = rows * depth(g);
  const std::vector<FissionPackedA>& packed = packed_.get(
      fission_, w, groups_, rows, depth(g), pair_channels(g), g.kh * g.kw, pair_tap_kw(g));
  wide_w_.resize(static_cast<size_t>(groups_ * per));
  for (int64_t gi = 0; gi < groups_; ++gi) {
    const std::vector<float> wg = packed[static_cast<size_t>(gi)].widened();
    std::copy(wg.begin(), wg.end(), wide_w_.begin() + gi * per);
  }
  packed_.invalidate();
  wide_key_ = w;
  wide_setting_ = fission_;
  return wide_w_.data();
}

// A layer output larger than this streams to DRAM (FissionConvShape::out_streams): the batch-16
// and -32 outputs of the networks here (12-50 MB), not those at batch 1 (up to 3 MB; VGG's
// first, 12.8 MB).
constexpr int64_t kOutStreamsBytes = int64_t{8} << 20;

bool Conv::use_winograd(const ConvGeom& g, int64_t N, bool bf16) const {
  const WinogradPolicy p = winograd_policy();
  if (p == WinogradPolicy::off || eliminated() || g.kh != 3 || g.kw != 3 || g.sh != 1 ||
      g.sw != 1 || g.dh != 1 || g.dw != 1)
    return false;
  if (p == WinogradPolicy::on) return true;
  // g.C and the output channels per group: each group is a Winograd conv of its own.
  return gemm::winograd_pays(active_isa(), g.C, out_ / groups_,
                             N * ((g.OH + 1) / 2) * ((g.OW + 1) / 2), bf16);
}

void Conv::forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) {
  const Tensor& x = input(type(), in, 0);
  const ConvGeom g = geometry(x.shape());
  const float* w = weight_checked(g).data();
  // Reduced-format weights at inference only; training drops them (the weights will change).
  const bool fis = fission_.active() && !ctx.training;
  if (ctx.training) drop_packed();
  // A pruned conv of a frozen model at inference runs a direct sparse conv (CSR spmm on the
  // image, forward_sparse) where the sparse policy picks it for its weight density
  // (include/deftnn/prune.h): the magnitude-pruning baseline's sparse kernel, end to end. fp32
  // weights only (a reduced format is a dense one).
  const std::vector<CsrMatrix>* sp =
      !fis && !ctx.training && ctx.frozen && sparse_direct(g)
          ? sparse_.get("conv", w, groups_, out_ / groups_, depth(g))
          : nullptr;
  // 3x3 stride-1 inference of a frozen model: Winograd F(2x2, 3x3) where the policy picks it
  // (src/gemm/winograd.h); the weights are transformed once, like the packed ones. Also for a
  // software-widened format (every reduced format but bf16, fission mode): such a conv is
  // bound by the FMAs, where widening in registers saves nothing, so it runs Winograd on the
  // weights widened once from the format (the same values the fission kernels multiply by).
  // CaffeNet at batch 32: Deft-16 / half / Deft-8 ran conv3-5 0.60-0.69x as fast as fp32 (the
  // direct fission kernels against fp32 Winograd). bf16 rounds the activations too (the
  // vdpbf16ps semantics), so it is not widened: native bf16 (avx512_bf16, weights rounded to
  // nearest even, not off-chip) runs Winograd's bf16 variant where it pays, transformed weights
  // and inputs rounded to bf16 and vdpbf16ps GEMMs (src/gemm/winograd.h); emulated bf16 and
  // truncated or stochastic weights (the values asked for) keep the direct kernels. Off-chip
  // mode is the paper's baseline (widened on every pass) and stays as it is.
  const bool soft = fis && fission_.software_widened();
  const bool bf16_wino = fis && fission_.format == Format::bf16 &&
                         fission_.mode != FissionMode::offchip &&
                         fission_.rounding == Rounding::nearest_even &&
                         active_isa() == Isa::avx512_bf16;
  const bool wino = (!fis || soft || bf16_wino) && !ctx.training && ctx.frozen && !sp &&
                    use_winograd(g, x.dim(0), bf16_wino);
  // Likewise a software-widened format on a direct conv with many output columns per call
  // (>= 128 pixels over the batch: each weight multiplies >= 128 values, far from bound by the
  // weight stream): the weights widened once from the format and run by the fp32 direct
  // kernels, the same values in the same tile order (bit for bit the fission kernels' result)
  // without the per-tile widening, which cost those FMA-bound convs 3-10% (CaffeNet's conv1 /
  // conv2 with Deft-16, half, Deft-16Q at batch 1 and 32). Fewer columns (ResNet-18's 7x7
  // layer4 at batch 1, fc layers) keep the reduced format in the tiles.
  const bool wide =
      fis && !wino && conv_widens_once(fission_, x.dim(0) * g.cols(), active_isa());
  const std::vector<FissionPackedA>* pa =
      wide ? &packed_.get(FissionSetting{}, widened_once(g, w), groups_, out_ / groups_, depth(g))
      : fis && !wino ? &packed_.get(fission_, w, groups_, out_ / groups_, depth(g),
                                    pair_channels(g), g.kh * g.kw, pair_tap_kw(g))
                     : nullptr;
  // Dense fp32 inference runs the same direct kernels with fp32 weights: no im2col pass
  // (1.2-1.5x faster than im2col + sgemm on CaffeNet's convs and LeNet's conv2, one thread).
  // The packed weights are kept while the model is frozen (Model::freeze), else packed per call
  // (as sgemm packs A per call).
  if (!fis && !ctx.training && !wino && !sp) {
    if (!ctx.frozen) packed_.invalidate();
    pa = &packed_.get(FissionSetting{}, w, groups_, out_ / groups_, depth(g));
  }
  // Y_g[Og, L] = W_g * B[K, L] (+ beta * Y_g).
  auto gemm = [&](int64_t gi, int64_t L, const float* wg, int64_t K, const float* B, float beta,
                  float* C) {
    if (pa)
      fission_gemm((*pa)[gi], false, L, 1.0f, B, L, beta, C, L, fission_.mode);
    else
      sgemm(false, false, out_ / groups_, L, K, 1.0f, wg, K, B, L, beta, C, L);
  };
  const Param* bp = param("bias");
  const float* b = bp ? bp->value.data() : nullptr;
  const int64_t N = x.dim(0), C = x.dim(1), O = out_, Og = O / groups_;
  const int64_t K = depth(g), P = g.cols(), HW = g.H * g.W;
  // A fused output pass (inference only): residual add, ReLU, output into a concat slice.
  const FusedOutput* fo = !ctx.training ? ctx.fused : nullptr;
  const bool relu = fo && fo->relu;
  const float* res = nullptr;
  if (fo && fo->residual) {
    const Shape ys{N, O, g.OH, g.OW};
    if (fo->residual->shape() != ys)
      fail(type(), "fused residual is " + shape_str(fo->residual->shape()) + ", the output " +
                       shape_str(ys));
    res = fo->residual->data();
  }
  float* y;
  int64_t ystride = O * P;   // floats between images of the output
  if (fo && fo->dst) {
    if (fo->dst_image_stride < O * P) fail(type(), "fused output slice stride too small");
    y = fo->dst;
    ystride = fo->dst_image_stride;
  } else {
    out.resize({N, O, g.OH, g.OW});
    y = out.data();
  }
  const float* xd = x.data();
  // The kernel report's note of the fused output pass (DEFTNN_VERBOSE).
  auto fused_report = [&]() -> std::string {
    if (!fo) return "";
    return std::string(", fused") + (res ? " + residual" : "") + (relu ? " + relu" : "") +
           (fo->dst ? " into a concat slice" : "");
  };
  if (sp) {
    forward_sparse(*sp, g, x, b, res, relu, y, ystride, fused_report());
    return;
  }
  if (wino) {
    const Isa isa = active_isa();
    const FissionSetting ws = fis ? fission_ : FissionSetting{};
    if (wino_.empty() || wino_key_ != w || wino_[0].isa() != isa || !(wino_setting_ == ws)) {
      wino_.clear();
      const float* src = soft ? widened_once(g, w) : w;
      for (int64_t gi = 0; gi < groups_; ++gi)
        wino_.emplace_back(isa, src + gi * Og * K, Og, g.C, bf16_wino);
      wino_key_ = w;
      wino_setting_ = ws;
    }
    if (kernel_report_enabled()) {
      last_kernel_ = std::string("winograd F(2x2,3x3)") +
                     (bf16_wino ? std::string(" in bf16")
                      : fis     ? std::string(" on ") + format_name(fission_.format) +
                                  " weights widened once"
                                : std::string()) +
                     ": 16 GEMMs of " +
                     (bf16_wino ? std::string("sbgemm_pairs_12x32__avx512bf16")
                                : active_gemm_kernel()) +
                     ", transforms " +
                     (gemm::winograd_fast(isa) ? isa_name(isa) : "portable");
      last_kernel_ += fused_report();
    }
    // Groups in parallel, one per thread, where they divide among the team (CaffeNet's conv4
    // and conv5: two groups of 49 tiles at batch 1, too little to split each); else one after
    // the other, each on the whole team. (Not one loop with a parallel-for `if`: a region
    // serialised by its `if` still counts as a level, and the nested team would be one thread.)
    auto group = [&](int64_t gi) {
      gemm::winograd_conv3x3(
          wino_[static_cast<size_t>(gi)],
          {N, g.H, g.W, g.pt, g.pl, g.OH, g.OW, C * HW, ystride}, xd + gi * g.C * HW,
          y + gi * Og * P,
          {b ? b + gi * Og : nullptr, res ? res + gi * Og * P : nullptr, O * P, relu});
    };
    const int team = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (team > 1 && groups_ >= team && groups_ % team == 0) {
#pragma omp parallel for num_threads(team) schedule(static)
      for (int64_t gi = 0; gi < groups_; ++gi) group(gi);
    } else {
      for (int64_t gi = 0; gi < groups_; ++gi) group(gi);
    }
    return;
  }
  const bool ident = !eliminated() && g.identity();
  // Packed weights (fp32 or a reduced format): fission_conv, the column matrix never
  // materialised in fp32 - B read from the image by the tile (AVX-512) or built into packed B
  // panels; eliminated layers from the retained rows only. 1x1 convs too: their images are
  // read in place, and bias, residual and ReLU are done in the tile's store (SqueezeNet's
  // 1x1 convs ran 40-120 GFLOP/s through sgemm with separate bias and ReLU passes).
  const bool direct = pa != nullptr;
  auto group_rows = [&](int64_t gi) -> const std::vector<int64_t>* {
    return eliminated() ? &retained_by_group_[static_cast<size_t>(gi)] : nullptr;
  };
  if (kernel_report_enabled()) {
    const std::string chunking = " (" + std::to_string(plan_chunk(g, K, N, plan_threads(N, 2.0 * O * P * K),
                                                                  pa ? &(*pa)[0] : nullptr)) +
                                 " image(s) per GEMM)";
    if (pa)
      last_kernel_ = std::string("fission_conv, no im2col: ") +
                     (wide ? std::string(format_name(fission_.format)) +
                                 " weights widened once to "
                           : "") +
                     format_name((*pa)[0].format()) + " weights" +
                     ((*pa)[0].tap_pair_kw() > 0       ? " in tap pairs"
                      : (*pa)[0].channel_pair_taps() > 0 ? " in channel pairs"
                                                         : "") +
                     ", " + fission_conv_kernel_name((*pa)[0], fission_conv_shape(g, 1, C * HW),
                                              fission_.mode) +
                     chunking;
    else
      last_kernel_ = std::string(eliminated() ? "im2col of the " + std::to_string(kept_) +
                                                    " retained rows (of " + std::to_string(g.rows()) +
                                                    ") + sgemm "
                                 : ident       ? "1x1, no im2col: sgemm "
                                               : "im2col + sgemm ") +
                     active_gemm_kernel() + chunking;
    last_kernel_ += fused_report();
  }

  const int used = plan_threads(N, 2.0 * O * P * K);
  const int64_t chunk = plan_chunk(g, K, N, used, pa ? &(*pa)[0] : nullptr);
  if (static_cast<int>(col_.size()) < used) col_.resize(used);
  if (static_cast<int>(ybuf_.size()) < used) ybuf_.resize(used);
  for (int t = 0; t < used && !direct; ++t) {   // (the direct path needs neither)
    if (!ident || chunk > 1) col_[t].get(K * P * chunk);
    if (chunk > 1) ybuf_[t].get(Og * P * chunk);
  }
  // One image of a grouped direct conv (CaffeNet conv2/4/5 at batch 1): one group per thread,
  // each a one-thread GEMM on its own data, instead of both threads on every group in turn
  // (per-group barriers and panels shared across cores). Groups are independent: disjoint
  // weights, inputs and outputs; fission_conv keeps its buffers per thread.
  const int team = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool group_parallel = direct && N == 1 && used == 1 && team > 1 && groups_ >= team &&
                              groups_ % team == 0;
  // Direct kernel, images [n0, n0 + nb) of group gi in one GEMM: each image's output written
  // straight into its plane (several images: ystride apart, FissionConvShape::out_image_stride;
  // the side-by-side buffer copied out afterwards was 4.4% of LeNet at batch 64), with bias,
  // residual and ReLU applied by the tile kernel to the rows it stores (in registers on AVX-512;
  // acc + bias is the same float sum as the kernel's beta = 1 on a C preset to the bias).
  auto direct_images = [&](int64_t n0, int64_t nb, int64_t gi) {
    FissionConvShape sh = fission_conv_shape(g, nb, C * HW);
    if (nb > 1) sh.out_image_stride = ystride;
    sh.out_streams = N * O * P * int64_t{sizeof(float)} > kOutStreamsBytes;
    TileEpilogue epi;   // done by the tile kernel on the rows it stores
    epi.bias = b ? b + gi * Og : nullptr;
    epi.res = res ? res + (n0 * O + gi * Og) * P : nullptr;
    epi.ldr = P;
    epi.res_image_stride = O * P;
    epi.relu = relu;
    fission_conv((*pa)[gi], sh, xd + (n0 * C + gi * g.C) * HW, 1.0f, 0.0f,
                 y + n0 * ystride + gi * Og * P, P, fission_.mode, group_rows(gi),
                 epi.active() ? &epi : nullptr);
  };
  for_chunks(N, chunk, used, [&](int64_t n0, int64_t n1, int t) {
    const int64_t nb = n1 - n0, L = nb * P;
    if (nb == 1 && group_parallel) {
#pragma omp parallel for num_threads(team) schedule(static)
      for (int64_t gi = 0; gi < groups_; ++gi) direct_images(n0, 1, gi);
      return;
    }
    for (int64_t gi = 0; gi < groups_; ++gi) {
      const float* wg = w + gi * Og * K;
      if (direct) {
        direct_images(n0, nb, gi);
        continue;
      }
      if (nb == 1) {
        // One image: the GEMM writes straight into the output.
        const float* xg = xd + (n0 * C + gi * g.C) * HW;
        float* yg = y + n0 * ystride + gi * Og * P;
        const float* rg = res ? res + (n0 * O + gi * Og) * P : nullptr;
        const float* B = xg;
        if (!ident) {
          B = col_[t].get(K * P);
          build_columns(g, false, gi, xg, col_[t].get(K * P), P);
        }
        // sgemm blocks K, so the bias goes in first (beta = 1), as in the unfused layer.
        float beta = 0.0f;
        if (b) {
          for (int64_t o = 0; o < Og; ++o) std::fill(yg + o * P, yg + (o + 1) * P, b[gi * Og + o]);
          beta = 1.0f;
        }
        gemm(gi, P, wg, K, B, beta, yg);
        if (rg || relu)
          parallel_ranges(Og * P, [&](int64_t lo, int64_t hi) {
            finish(yg + lo, rg ? rg + lo : nullptr, relu, hi - lo);
          });
        continue;
      }
      // Several images side by side: Ybuf[Og, nb*P] = W_g * [col_0 | col_1 | ...].
      float* col = col_[t].get(K * P * chunk);
      float* yb = ybuf_[t].get(Og * P * chunk);
      for (int64_t i = 0; i < nb; ++i)
        build_columns(g, ident, gi, xd + ((n0 + i) * C + gi * g.C) * HW, col + i * P, L);
      gemm(gi, L, wg, K, col, 0.0f, yb);
      const PlaneOut out_plane{y, ystride, O, Og, P, b, res, relu};
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t o = 0; o < Og; ++o) out_plane(yb + o * L + i * P, n0 + i, gi, o);
    }
  });
}

// Whether the sparse path can run this geometry (forward_sparse): a (padded) image small
// enough for 32-bit element offsets; a bigger one runs the dense kernels.
bool Conv::sparse_direct(const ConvGeom& g) {
  const int64_t Hp = std::max(g.H, (g.OH - 1) * g.sh + (g.kh - 1) * g.dh + 1) + g.pt;
  const int64_t Wp = std::max(g.W, (g.OW - 1) * g.sw + (g.kw - 1) * g.dw + 1) + g.pl + g.sw;
  return g.C * Hp * Wp < (int64_t{1} << 31);
}

// The sparse inference path (see forward), a direct sparse convolution without a column
// matrix. Weight (c, i, j) multiplies, for output (oh, ow), the padded input at row
// oh sh + i dh and column ow sw + j dw. The image is copied padded and split by column phase
// (sw phases of Wq columns per row: element (c, r, ph, m) is padded column m sw + ph), so that
// along ow the weight reads consecutive floats of one phase from c * plane + i dh (sw Wq) +
// ((j dw) % sw) Wq + (j dw) / sw: the CSR column index becomes that element offset and each
// output row is a CSR spmm of OW columns (Park et al. 2017, direct sparse convolution). At
// stride 1 an unpadded image is read in place, and the output is computed the padded width
// (Wq) wide across rows ("wide rows", the last kw - 1 columns of each discarded): one spmm per
// image. Threads over images, or over each image's output channels when there are too few.
void Conv::forward_sparse(const std::vector<CsrMatrix>& sp, const ConvGeom& g, const Tensor& x,
                          const float* b, const float* res, bool relu, float* y, int64_t ystride,
                          const std::string& fused) {
  if (kernel_report_enabled()) {
    char dens[32];
    std::snprintf(dens, sizeof dens, "%.1f%%", 100.0 * sparse_.density());
    last_kernel_ = std::string("direct sparse conv (no im2col: each weight reads its shifted "
                               "input plane)") +
                   (eliminated() ? ", " + std::to_string(kept_) + " retained rows" : "") +
                   " + CSR spmm (weight density " + dens + ") " + active_spmm_kernel() + fused;
  }
  const int64_t N = x.dim(0), C = x.dim(1), O = out_, Og = O / groups_;
  const int64_t P = g.cols(), HW = g.H * g.W;
  const int64_t sw = g.sw;
  const int64_t Hp = (g.OH - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  const int64_t Wq = ((g.OW - 1) * sw + (g.kw - 1) * g.dw + 1 + sw - 1) / sw;   // per phase
  const int64_t row = sw * Wq;                                                     // a padded row
  const bool wide = g.sh == 1 && sw == 1;
  // In place: stride 1, no padding, and the image is exactly the padded extent.
  const bool in_place = wide && g.pt == 0 && g.pl == 0 && Wq == g.W && Hp <= g.H;
  const int64_t plane = in_place ? HW : Hp * row;
  const int64_t Nw = (g.OH - 1) * Wq + g.OW;   // wide rows: output columns through the last
  // The CSR matrices with element offsets for column indices, once per geometry.
  if (sparse_off_.size() != sp.size() || sparse_off_plane_ != plane || sparse_off_row_ != row ||
      sparse_off_gen_ != sparse_.generation()) {
    sparse_off_ = sp;
    const int64_t taps = g.kh * g.kw;
    for (size_t gi = 0; gi < sp.size(); ++gi)
      for (int32_t& c : sparse_off_[gi].col_idx) {
        const int64_t r = eliminated() ? retained_by_group_[gi][static_cast<size_t>(c)] : c;
        const int64_t ch = r / taps, i = r / g.kw % g.kh, j = r % g.kw;
        const int64_t col = j * g.dw;
        c = static_cast<int32_t>(ch * plane + i * g.dh * row + col % sw * Wq + col / sw);
      }
    sparse_off_plane_ = plane;
    sparse_off_row_ = row;
    sparse_off_gen_ = sparse_.generation();
  }
  const gemm::SpmmRowsFn kernel = gemm::spmm_rows_kernel(active_isa());
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Units: (image, group, chunk of output channels); chunks only when images are too few.
  const int64_t row_chunks = N >= nt ? 1 : std::min<int64_t>(Og, 4 * nt);
  const int64_t rows_per = (Og + row_chunks - 1) / row_chunks;
  const int64_t chunks = (Og + rows_per - 1) / rows_per;
  const int64_t units = N * groups_ * chunks;
  const int used = static_cast<int>(std::min<int64_t>(nt, units));
  if (static_cast<int>(col_.size()) < used) col_.resize(used);
  if (static_cast<int>(ybuf_.size()) < used) ybuf_.resize(used);
  // The padded, phase-split copy of image n, group gi into d (C x Hp x sw x Wq, zeros around).
  auto pad_copy = [&](int64_t n, int64_t gi, float* d) {
    const float* xg = x.data() + (n * C + gi * g.C) * HW;
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t r = 0; r < Hp; ++r) {
        float* dr = d + (c * Hp + r) * row;
        const int64_t ih = r - g.pt;
        if (ih < 0 || ih >= g.H) {
          std::fill(dr, dr + row, 0.0f);
          continue;
        }
        const float* sr = xg + (c * g.H + ih) * g.W;
        for (int64_t ph = 0; ph < sw; ++ph)
          for (int64_t m = 0; m < Wq; ++m) {
            const int64_t iw = m * sw + ph - g.pl;
            dr[ph * Wq + m] = iw >= 0 && iw < g.W ? sr[iw] : 0.0f;
          }
      }
  };
  const int64_t copy_floats = g.C * Hp * row;
  // At batch < threads, every unit of an image shares one padded copy, made before.
  std::vector<float> shared_pad;
  if (!in_place && chunks > 1) {
    shared_pad.resize(static_cast<size_t>(N * groups_ * copy_floats));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t gi = 0; gi < groups_; ++gi)
        pad_copy(n, gi, shared_pad.data() + (n * groups_ + gi) * copy_floats);
  }
#pragma omp parallel for num_threads(used) schedule(dynamic, 1) if (used > 1)
  for (int64_t u = 0; u < units; ++u) {
    const int t = omp_get_thread_num();
    const int64_t n = u / (groups_ * chunks), gi = u / chunks % groups_, q = u % chunks;
    const int64_t o0 = q * rows_per, o1 = std::min(Og, o0 + rows_per);
    const float* src;
    if (in_place) {
      src = x.data() + (n * C + gi * g.C) * HW;
    } else if (chunks > 1) {
      src = shared_pad.data() + (n * groups_ + gi) * copy_floats;
    } else {
      float* d = col_[t].get(copy_floats);
      pad_copy(n, gi, d);
      src = d;
    }
    const CsrMatrix& a = sparse_off_[static_cast<size_t>(gi)];
    const int64_t* rp = a.row_ptr.data() + o0;
    float* plane0 = y + n * ystride + (gi * Og + o0) * P;   // output plane o0
    const PlaneOut out_plane{y, ystride, O, Og, P, b, res, relu};
    if (wide) {
      float* wbuf = ybuf_[t].get((o1 - o0) * Nw);
      kernel(rp, a.col_idx.data(), a.values.data(), 0, o1 - o0, src, 1, Nw, wbuf, Nw);
      for (int64_t o = o0; o < o1; ++o) {
        // Gather the valid columns of each wide row in place (dst index <= source index).
        float* wr = wbuf + (o - o0) * Nw;
        for (int64_t oh = 1; oh < g.OH; ++oh)
          std::memmove(wr + oh * g.OW, wr + oh * Wq, sizeof(float) * static_cast<size_t>(g.OW));
        out_plane(wr, n, gi, o);
      }
    } else {
      // One spmm per output row, straight into the output planes (rows P apart).
      for (int64_t oh = 0; oh < g.OH; ++oh)
        kernel(rp, a.col_idx.data(), a.values.data(), 0, o1 - o0, src + oh * g.sh * row, 1,
               g.OW, plane0 + oh * g.OW, P);
      for (int64_t o = o0; o < o1; ++o) out_plane(plane0 + (o - o0) * P, n, gi, o);
    }
  }
}

void Conv::backward(const std::vector<const Tensor*>& in, const Tensor& out, const Tensor& dout,
                    const std::vector<Tensor*>& din, const RunContext& ctx) {
  (void)ctx;
  (void)out;
  const Tensor& x = input(type(), in, 0);
  const ConvGeom g = geometry(x.shape());
  const float* w = weight_checked(g).data();
  const int64_t N = x.dim(0), C = x.dim(1), O = out_, Og = O / groups_;
  const int64_t K = depth(g), P = g.cols(), HW = g.H * g.W;
  const Shape yshape{N, O, g.OH, g.OW};
  if (dout.shape() != yshape)
    fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(yshape));
  const float* dy = dout.data();
  const float* xd = x.data();
  const bool ident = !eliminated() && g.identity();

  Param* wp = param("weight");
  float* dw = (wp->trainable && wp->grad.numel() == wp->value.numel()) ? wp->grad.data() : nullptr;
  Param* bp = param("bias");
  if (bp && bp->trainable && bp->grad.numel() == O) {
    float* db = bp->grad.data();
#pragma omp parallel for schedule(static) if (N * O * P >= kParallelMin && !omp_in_parallel())
    for (int64_t o = 0; o < O; ++o) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float* r = dy + (n * O + o) * P;
        float acc = 0.0f;
        for (int64_t p = 0; p < P; ++p) acc += r[p];
        s += acc;
      }
      db[o] += static_cast<float>(s);
    }
  }
  float* dx = nullptr;
  if (!din.empty() && din[0]) {
    din[0]->resize(x.shape());
    dx = din[0]->data();
  }
  if (!dw && !dx) return;

  const int used = plan_threads(N, 2.0 * O * P * K * ((dw ? 1 : 0) + (dx ? 1 : 0)));
  const int64_t chunk = dw ? plan_chunk(g, K, N, used) : 1;
  const int64_t wn = O * K;
  if (static_cast<int>(col_.size()) < used) col_.resize(used);
  if (static_cast<int>(dcol_.size()) < used) dcol_.resize(used);
  if (static_cast<int>(dw_.size()) < used) dw_.resize(used);
  if (static_cast<int>(ybuf_.size()) < used) ybuf_.resize(used);
  for (int t = 0; t < used; ++t) {
    if (dw && (!ident || chunk > 1)) col_[t].get(K * P * chunk);
    if (dw && chunk > 1) ybuf_[t].get(Og * P * chunk);
    if (!ident && dx) dcol_[t].get(K * P);
    if (dw && used > 1) std::fill(dw_[t].get(wn), dw_[t].get(wn) + wn, 0.0f);
  }
  for_chunks(N, chunk, used, [&](int64_t n0, int64_t n1, int t) {
    const int64_t nb = n1 - n0, L = nb * P;
    for (int64_t gi = 0; gi < groups_; ++gi) {
      const float* wg = w + gi * Og * K;
      if (dw) {
        // dW_g += dY_g[Og, nb*P] * [col_0 | col_1 | ...]^T
        float* acc = (used > 1 ? dw_[t].get(wn) : dw) + gi * Og * K;
        const float* A;
        const float* B;
        if (nb == 1) {
          const float* xg = xd + (n0 * C + gi * g.C) * HW;
          A = dy + (n0 * O + gi * Og) * P;
          B = xg;
          if (!ident) {
            build_columns(g, false, gi, xg, col_[t].get(K * P), P);
            B = col_[t].get(K * P);
          }
        } else {
          float* col = col_[t].get(K * P * chunk);
          float* dyb = ybuf_[t].get(Og * P * chunk);
          for (int64_t i = 0; i < nb; ++i) {
            build_columns(g, ident, gi, xd + ((n0 + i) * C + gi * g.C) * HW, col + i * P, L);
            for (int64_t o = 0; o < Og; ++o)
              std::memcpy(dyb + o * L + i * P, dy + ((n0 + i) * O + gi * Og + o) * P,
                          sizeof(float) * static_cast<size_t>(P));
          }
          A = dyb;
          B = col;
        }
        sgemm(false, true, Og, K, L, 1.0f, A, L, B, L, 1.0f, acc, K);
      }
      if (dx) {
        for (int64_t n = n0; n < n1; ++n) {
          const float* dyg = dy + (n * O + gi * Og) * P;
          float* dxg = dx + (n * C + gi * g.C) * HW;
          if (ident) {
            sgemm(true, false, K, P, Og, 1.0f, wg, K, dyg, P, 0.0f, dxg, P);
          } else {
            float* dcol = dcol_[t].get(K * P);
            sgemm(true, false, K, P, Og, 1.0f, wg, K, dyg, P, 0.0f, dcol, P);
            if (eliminated())
              col2im_rows(g, dcol, retained_.data() + gi * kept_, kept_, dxg);
            else
              col2im(g, dcol, dxg);
          }
        }
      }
    }
  });
  if (dw && used > 1) {
    // Fixed reduction order (thread 0, 1, ...): results do not depend on scheduling.
    std::vector<const float*> parts(used);
    for (int t = 0; t < used; ++t) parts[t] = dw_[t].get(wn);
#pragma omp parallel for schedule(static) if (wn >= kParallelMin)
    for (int64_t i = 0; i < wn; ++i) {
      float s = 0.0f;
      for (int t = 0; t < used; ++t) s += parts[t][i];
      dw[i] += s;
    }
  }
}

void Conv::init_params(Rng& rng) {
  Param* w = param("weight");
  if (!w) fail(type(), "init_params called before infer (no weight yet)");
  const int64_t fan_in = w->value.numel() / out_;
  fill_weight(w->value, filler_, weight_std_, fan_in, rng);
  if (Param* b = param("bias")) b->value.fill(static_cast<float>(bias_value_));
}

int64_t Conv::flops(const std::vector<Shape>& inputs, const Shape& output) const {
  if (inputs.empty() || inputs[0].size() != 4 || output.size() != 4) return 0;
  const int64_t K = eliminated() ? kept_ : inputs[0][1] / groups_ * kernel_.h * kernel_.w;
  return 2 * output[0] * output[1] * output[2] * output[3] * K;
}

std::unique_ptr<Layer> make_conv(const Attrs& a) { return std::make_unique<Conv>(a); }

}  // namespace deftnn::ops
