// Max and average pooling, NCHW, with Caffe's ceil-mode output size and padding rules.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops/common.h"
#include "ops/layers.h"
#include "ops/pool_rows.h"

namespace deftnn::ops {
namespace {

struct PoolGeom {
  int64_t H, W, kh, kw, sh, sw, pt, pl, pb, pr, OH, OW;
};

class Pool final : public Layer {
 public:
  Pool(const Attrs& a, bool is_max) : Layer(a), max_(is_max) {
    const std::string t = type();
    std::vector<std::string> keys{"kernel", "stride", "pad", "pads", "ceil_mode", "global"};
    if (!max_) keys.push_back("count_include_pad");
    a.check_keys(t, keys);
    const int64_t global = a.get_int("global", 0);
    const int64_t ceil = a.get_int("ceil_mode", 1);
    const int64_t cip = max_ ? 1 : a.get_int("count_include_pad", 1);
    if (global != 0 && global != 1) fail(t, "attribute 'global' must be 0 or 1");
    if (ceil != 0 && ceil != 1) fail(t, "attribute 'ceil_mode' must be 0 or 1");
    if (cip != 0 && cip != 1) fail(t, "attribute 'count_include_pad' must be 0 or 1");
    global_ = global == 1;
    ceil_ = ceil == 1;
    count_include_pad_ = cip == 1;
    if (!global_) {
      kernel_ = get_hw(a, t, "kernel");
      stride_ = get_hw(a, t, "stride", {1, 1});
      pads_ = get_pads(a, t);
      if (kernel_.h <= 0 || kernel_.w <= 0)
        fail(t, "kernel must be positive, got " + shape_str({kernel_.h, kernel_.w}));
      if (stride_.h <= 0 || stride_.w <= 0)
        fail(t, "stride must be positive, got " + shape_str({stride_.h, stride_.w}));
      if (std::max(pads_.t, pads_.b) >= kernel_.h || std::max(pads_.l, pads_.r) >= kernel_.w)
        fail(t, "padding " + pads_.str() + " must be smaller than the kernel " +
                    shape_str({kernel_.h, kernel_.w}));
    }
  }
  std::string type() const override { return max_ ? "maxpool" : "avgpool"; }

  PoolGeom geometry(const Shape& s) const {
    check_rank(type(), s, 4);
    check_positive_dims(type(), s);
    PoolGeom g{};
    g.H = s[2];
    g.W = s[3];
    if (global_) {
      g.kh = g.H; g.kw = g.W; g.sh = g.sw = 1;
      g.pt = g.pl = g.pb = g.pr = 0;
      g.OH = g.OW = 1;
      return g;
    }
    g.kh = kernel_.h; g.kw = kernel_.w; g.sh = stride_.h; g.sw = stride_.w;
    g.pt = pads_.t; g.pl = pads_.l; g.pb = pads_.b; g.pr = pads_.r;
    if (g.H + g.pt + g.pb < g.kh || g.W + g.pl + g.pr < g.kw)
      fail(type(), "input " + shape_str(s) + " is smaller than kernel " +
                       shape_str({g.kh, g.kw}) + (pads_.zero() ? "" : " even with pads " + pads_.str()));
    g.OH = out_size(g.H, g.kh, g.sh, g.pt, g.pb);
    g.OW = out_size(g.W, g.kw, g.sw, g.pl, g.pr);
    return g;
  }

  // Caffe: ceil((H + 2p - k) / s) + 1, minus one when the last window would start beyond the
  // image and its leading pad; floor instead of ceil when ceil_mode = 0.
  int64_t out_size(int64_t H, int64_t k, int64_t s, int64_t p0, int64_t p1) const {
    const int64_t span = H + p0 + p1 - k;
    int64_t o = ceil_ ? (span + s - 1) / s + 1 : span / s + 1;
    if (ceil_ && (o - 1) * s >= H + p0) --o;
    return o;
  }

  Shape infer(const std::vector<Shape>& inputs) override {
    check_num_inputs(type(), inputs, 1);
    const PoolGeom g = geometry(inputs[0]);
    return {inputs[0][0], inputs[0][1], g.OH, g.OW};
  }

  void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) override {
    const Tensor& x = input(type(), in, 0);
    const PoolGeom g = geometry(x.shape());
    const int64_t N = x.dim(0), C = x.dim(1), planes = N * C;
    out.resize({N, C, g.OH, g.OW});
    const float* xd = x.data();
    float* y = out.data();
    const int64_t ip = g.H * g.W, op = g.OH * g.OW;
    const bool big = planes * op * g.kh * g.kw >= kParallelMin && !omp_in_parallel();
    const Isa isa = active_isa();
    if (max_) {
      int32_t* mask = nullptr;
      mask_valid_ = ctx.training;
      if (ctx.training) {
        mask_.resize(static_cast<size_t>(planes * op));
        mask_shape_ = x.shape();
        mask = mask_.data();
      }
      // Small planes (<= 16 KiB) start cold: max_plane's own prefetch runs 4 output rows ahead
      // inside a plane, and a 27x27 plane is only 13 output rows. So the next plane is
      // prefetched whole. Alternated, 2 threads, batch 16 / 32: SqueezeNet's 55x55 and 27x27
      // pools 0.98 -> 0.64 and 0.71 -> 0.37 ms, CaffeNet's pool1/2/5 1.79 -> 0.96, 1.26 -> 0.75,
      // 0.61 -> 0.30 ms. Larger planes not: the whole 111x111 next plane cost 5%, and only its
      // first rows 12-30% on ResNet-18's 112x112 pool at batch 16.
      const bool next_plane = ip * 4 <= (int64_t{16} << 10);
      if (!mask && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.pt == 0 && g.pl == 0 &&
          g.H == 2 * g.OH && g.W == 2 * g.OW && g.OW < 32) {
        // Inference, 2x2 stride 2 tiling small planes exactly (LeNet's pools): every window is
        // interior, so the planes are one run of row pairs, each one row-kernel call (output
        // row r of the run from input rows 2r and 2r + 1), instead of per plane the plane
        // loop's set-up and the scalar loop. Hot input, 2 threads, alternated builds: LeNet's
        // pool1 at batch 32 (20 x 24 x 24) 0.053 -> 0.029-0.038 ms, pool2 (50 x 8 x 8) 0.040 ->
        // 0.018 ms. Wide rows stay per plane, where the rows ahead are prefetched: VGG's 112 x
        // 112 pool at batch 16, streamed from DRAM, ran 1.9x slower this way.
        const int64_t pairs = planes * g.OH, W = g.W, OW = g.OW;
#pragma omp parallel for schedule(static) if (big)
        for (int64_t r = 0; r < pairs; ++r)
          max_rows2_k2s2(isa, xd + 2 * r * W, xd + (2 * r + 1) * W, OW, y + r * OW);
        return;
      }
#pragma omp parallel for schedule(static) if (big)
      for (int64_t pl = 0; pl < planes; ++pl) {
        if (next_plane && pl + 1 < planes) prefetch_rows(g, xd + (pl + 1) * ip, 0, g.H);
        max_plane(g, xd + pl * ip, y + pl * op, mask ? mask + pl * op : nullptr, isa);
      }
    } else if (global_) {
      // One contiguous plane per output: a vectorised sum (the generic path sums rows into a
      // buffer, then each window's columns one by one: a 13x13 plane's 13 scalar adds per
      // output row). 2 threads, in-process A/B: SqueezeNet's 1000 x 13 x 13 at batch 16 0.432
      // -> 0.186 ms, ResNet-18's 512 x 7 x 7 at batch 1 0.028 -> 0.013 ms.
      const float inv = 1.0f / static_cast<float>(ip);
#pragma omp parallel for schedule(static) if (big)
      for (int64_t pl = 0; pl < planes; ++pl) {
        const float* xp = xd + pl * ip;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < ip; ++i) sum += xp[i];
        y[pl] = sum * inv;
      }
    } else {
#pragma omp parallel for schedule(static) if (big)
      for (int64_t pl = 0; pl < planes; ++pl) avg_plane(g, xd + pl * ip, y + pl * op);
    }
  }

  void backward(const std::vector<const Tensor*>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor*>& din, const RunContext&) override {
    if (din.empty() || !din[0]) return;
    const Tensor& x = input(type(), in, 0);
    const PoolGeom g = geometry(x.shape());
    const int64_t N = x.dim(0), C = x.dim(1), planes = N * C;
    const Shape yshape{N, C, g.OH, g.OW};
    if (dout.shape() != yshape)
      fail(type(), "dout is " + shape_str(dout.shape()) + ", expected " + shape_str(yshape));
    din[0]->resize(x.shape());
    const int64_t ip = g.H * g.W, op = g.OH * g.OW;
    const float* dy = dout.data();
    float* dx = din[0]->data();
    const float* xd = x.data();
    const bool big = planes * op * g.kh * g.kw >= kParallelMin && !omp_in_parallel();
    const Isa isa = active_isa();
    if (max_) {
      const bool have_mask = mask_valid_ && mask_shape_ == x.shape();
      if (!have_mask) {
        // Forward ran without training: recompute the argmax (same tie rule: first maximum).
        mask_.resize(static_cast<size_t>(planes * op));
        scratch_y_.resize(static_cast<size_t>(planes * op));
#pragma omp parallel for schedule(static) if (big)
        for (int64_t pl = 0; pl < planes; ++pl)
          max_plane(g, xd + pl * ip, scratch_y_.data() + pl * op, mask_.data() + pl * op, isa);
      }
      const int32_t* mask = mask_.data();
#pragma omp parallel for schedule(static) if (big)
      for (int64_t pl = 0; pl < planes; ++pl) {
        float* d = dx + pl * ip;
        std::fill(d, d + ip, 0.0f);
        const float* s = dy + pl * op;
        const int32_t* m = mask + pl * op;
        for (int64_t o = 0; o < op; ++o) d[m[o]] += s[o];
      }
    } else {
#pragma omp parallel for schedule(static) if (big)
      for (int64_t pl = 0; pl < planes; ++pl) avg_plane_back(g, dy + pl * op, dx + pl * ip);
    }
  }

  int64_t flops(const std::vector<Shape>& inputs, const Shape& output) const override {
    if (inputs.empty() || inputs[0].size() != 4 || output.size() != 4) return 0;
    const int64_t k = global_ ? inputs[0][2] * inputs[0][3] : kernel_.h * kernel_.w;
    return shape_numel(output) * k;
  }

 private:
  // Max over the window of output (oh, ow) clipped to the image; first maximum wins ties.
  static void max_window(const PoolGeom& g, const float* x, int64_t oh, int64_t ow, float* y,
                         int32_t* mask) {
    int64_t hs = oh * g.sh - g.pt;
    const int64_t he = std::min(hs + g.kh, g.H);
    hs = std::max<int64_t>(hs, 0);
    int64_t ws = ow * g.sw - g.pl;
    const int64_t we = std::min(ws + g.kw, g.W);
    ws = std::max<int64_t>(ws, 0);
    // Two passes (the maximum, then its first position): branch-free on random data.
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) m = std::max(m, x[h * g.W + w]);
    int64_t idx = hs * g.W + ws;
    if (mask) idx = first_of(x, g.W, hs, he, ws, we, m);
    y[oh * g.OW + ow] = m;
    if (mask) mask[oh * g.OW + ow] = static_cast<int32_t>(idx);
  }

  // The first position (row-major) in the window holding m.
  static int64_t first_of(const float* x, int64_t W, int64_t hs, int64_t he, int64_t ws,
                          int64_t we, float m) {
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w)
        if (x[h * W + w] == m) return h * W + w;
    return hs * W + ws;   // m is NaN
  }

  // Outputs [lo, hi) whose windows lie entirely inside the image along one dimension.
  static void interior(int64_t n_out, int64_t H, int64_t k, int64_t s, int64_t p, int64_t& lo,
                       int64_t& hi) {
    lo = std::min(n_out, (p + s - 1) / s);
    hi = H - k + p < 0 ? 0 : std::min(n_out, (H - k + p) / s + 1);
    hi = std::max(hi, lo);
  }

  // Input rows [h0, h1) of the plane (clipped to the image) into L1, one prefetch per line.
  static void prefetch_rows(const PoolGeom& g, const float* x, int64_t h0, int64_t h1) {
    for (int64_t hh = std::max<int64_t>(h0, 0); hh < std::min(h1, g.H); ++hh)
      for (int64_t w = 0; w < g.W; w += 16)
        _mm_prefetch(reinterpret_cast<const char*>(x + hh * g.W + w), _MM_HINT_T0);
  }

  static void max_plane(const PoolGeom& g, const float* x, float* y, int32_t* mask, Isa isa) {
    if (!mask && g.kh == 3 && g.kw == 3 && g.sw == 2) {
      // Inference, 3x3 stride 2 (AlexNet, SqueezeNet, ResNet, cifarnet): every output row,
      // edges included, in one kernel call. Padded columns and a ceil-mode window's columns
      // past the edge are -inf in the kernel; a window's rows outside the image are replaced
      // by one inside it (a repeated row does not change a maximum).
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h = oh * g.sh - g.pt, in = std::max<int64_t>(h, 0);
        // The rows four output rows ahead, one prefetch per cache line.
        const int64_t ph0 = h + 2 + 4 * g.sh;
        prefetch_rows(g, x, ph0, ph0 + g.sh);
        const float* r[3];
        for (int64_t i = 0; i < 3; ++i) {
          const int64_t hh = h + i >= 0 && h + i < g.H ? h + i : in;
          r[i] = x + hh * g.W - g.pl;
        }
        max_rows3_k3s2(isa, r[0], r[1], r[2], g.OW, g.pl, g.pl + g.W, y + oh * g.OW);
      }
      return;
    }
    int64_t oh0, oh1, ow0, ow1;
    interior(g.OH, g.H, g.kh, g.sh, g.pt, oh0, oh1);
    interior(g.OW, g.W, g.kw, g.sw, g.pl, ow0, ow1);
    const bool k2s2 = g.kh == 2 && g.kw == 2 && g.sw == 2;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      if (oh < oh0 || oh >= oh1) {
        for (int64_t ow = 0; ow < g.OW; ++ow) max_window(g, x, oh, ow, y, mask);
        continue;
      }
      for (int64_t ow = 0; ow < ow0; ++ow) max_window(g, x, oh, ow, y, mask);
      const int64_t h = oh * g.sh - g.pt;
      float* yr = y + oh * g.OW;
      int32_t* mr = mask ? mask + oh * g.OW : nullptr;
      if (k2s2 && !mr && ow1 - ow0 >= 32) {
        // Inference, 2x2 stride 2 on wide rows (VGG's first pools): both passes in one kernel
        // call per row, with the rows four output rows ahead prefetched (one line each), as the
        // 3x3 path does. (Rows under 64 wide stay on the scalar loop: no gain measured there.)
        prefetch_rows(g, x, h + 4 * g.sh, h + 4 * g.sh + 2);
        const float* r0 = x + h * g.W + 2 * ow0 - g.pl;
        max_rows2_k2s2(isa, r0, r0 + g.W, ow1 - ow0, yr + ow0);
      } else if (k2s2) {
        // The common 2x2 stride-2 window, unrolled (same tie rule as max_window).
        const float* r0 = x + h * g.W;
        const float* r1 = r0 + g.W;
        // Branch-free: the maximum, then the first position holding it (random data would
        // mispredict a compare-and-branch chain on every window).
        const int64_t base = h * g.W - g.pl;
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          const int64_t w = 2 * ow - g.pl;
          const float a = r0[w], b = r0[w + 1], c = r1[w], d = r1[w + 1];
          const float m = std::max(std::max(a, b), std::max(c, d));
          yr[ow] = m;
          if (mr) {
            const int32_t o = static_cast<int32_t>(base + 2 * ow);
            const int32_t W = static_cast<int32_t>(g.W);
            mr[ow] = a == m ? o : b == m ? o + 1 : c == m ? o + W : o + W + 1;
          }
        }
      } else if (!mr && ow1 > ow0) {
        // Inference, any window: separable. The column maxima of the kh rows (contiguous,
        // vectorised), then the maximum of kw of them per output: 3x3 stride 2 went from
        // 9 strided loads per output to 3 vector + 3 scalar (CaffeNet pool1 0.12 -> 0.04 ms).
        const int64_t c0 = ow0 * g.sw - g.pl, c1 = (ow1 - 1) * g.sw - g.pl + g.kw;
        thread_local std::vector<float> colmax;
        if (static_cast<int64_t>(colmax.size()) < c1 - c0) colmax.resize(static_cast<size_t>(c1 - c0));
        float* __restrict t = colmax.data();
        const float* r0 = x + h * g.W + c0;
        std::copy(r0, r0 + (c1 - c0), t);
        for (int64_t i = 1; i < g.kh; ++i) {
          const float* __restrict r = r0 + i * g.W;
          for (int64_t w = 0; w < c1 - c0; ++w) t[w] = std::max(t[w], r[w]);
        }
        // The maximum of kw of them per output: vectorised for 3-wide stride-2 windows
        // (SqueezeNet 1.1's three pools were 6-8% of its batch-1 time, mostly this loop).
        max_row(isa, t, ow1 - ow0, g.kw, g.sw, yr + ow0);
      } else {
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          const int64_t w0 = ow * g.sw - g.pl;
          float m = x[h * g.W + w0];
          for (int64_t i = 0; i < g.kh; ++i) {
            const float* r = x + (h + i) * g.W + w0;
            for (int64_t j = 0; j < g.kw; ++j) m = std::max(m, r[j]);
          }
          yr[ow] = m;
          if (mr) mr[ow] = static_cast<int32_t>(first_of(x, g.W, h, h + g.kh, w0, w0 + g.kw, m));
        }
      }
      for (int64_t ow = ow1; ow < g.OW; ++ow) max_window(g, x, oh, ow, y, mask);
    }
  }

  // The window of output (oh, ow) clipped to the image, and the divisor.
  void avg_window(const PoolGeom& g, int64_t oh, int64_t ow, int64_t& hs, int64_t& he, int64_t& ws,
                  int64_t& we, float& inv) const {
    hs = oh * g.sh - g.pt;
    he = std::min(hs + g.kh, g.H + g.pb);
    ws = ow * g.sw - g.pl;
    we = std::min(ws + g.kw, g.W + g.pr);
    const int64_t padded = (he - hs) * (we - ws);
    hs = std::max<int64_t>(hs, 0);
    ws = std::max<int64_t>(ws, 0);
    he = std::min(he, g.H);
    we = std::min(we, g.W);
    const int64_t real = (he - hs) * (we - ws);
    inv = 1.0f / static_cast<float>(count_include_pad_ ? padded : real);
  }

  // Separable: per output row the column sums of its clipped rows (contiguous, vectorised)
  // into a zero-bordered row, then the sum of kw of them per output, times 1 / the window's
  // count (Caffe / ONNX rule of avg_window). Per window, avg_window and its loops were ~6 ns an
  // output (cifarnet's two 3x3 average pools: 1.1 of its 11 ms at batch 64, one thread).
  void avg_plane(const PoolGeom& g, const float* x, float* y) const {
    const int64_t span = std::max((g.OW - 1) * g.sw + g.kw, g.pl + g.W);
    thread_local std::vector<float> row;
    if (static_cast<int64_t>(row.size()) < span) row.resize(static_cast<size_t>(span));
    float* __restrict t = row.data();
    std::fill(t, t + span, 0.0f);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t hs = oh * g.sh - g.pt, he = std::min(hs + g.kh, g.H + g.pb);
      const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(he, g.H);
      float* __restrict tc = t + g.pl;   // column w of the image at tc[w]
      const float* r0 = x + h0 * g.W;
      for (int64_t w = 0; w < g.W; ++w) tc[w] = r0[w];
      for (int64_t h = h0 + 1; h < h1; ++h) {
        const float* __restrict r = x + h * g.W;
        for (int64_t w = 0; w < g.W; ++w) tc[w] += r[w];
      }
      const int64_t rows = count_include_pad_ ? he - hs : h1 - h0;
      float* yr = y + oh * g.OW;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const float* tw = t + ow * g.sw;   // padded column ow * sw on
        float sum = tw[0];
        for (int64_t j = 1; j < g.kw; ++j) sum += tw[j];
        const int64_t ws = ow * g.sw - g.pl, we = std::min(ws + g.kw, g.W + g.pr);
        const int64_t cols = count_include_pad_ ? we - ws
                                                : std::min(we, g.W) - std::max<int64_t>(ws, 0);
        yr[ow] = sum * (1.0f / static_cast<float>(rows * cols));
      }
    }
  }

  void avg_plane_back(const PoolGeom& g, const float* dy, float* dx) const {
    std::fill(dx, dx + g.H * g.W, 0.0f);
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        int64_t hs, he, ws, we;
        float inv;
        avg_window(g, oh, ow, hs, he, ws, we, inv);
        const float v = dy[oh * g.OW + ow] * inv;
        for (int64_t h = hs; h < he; ++h)
          for (int64_t w = ws; w < we; ++w) dx[h * g.W + w] += v;
      }
  }

  bool max_;
  bool global_ = false, ceil_ = true, count_include_pad_ = true;
  HW kernel_, stride_{1, 1};
  Pads pads_;
  std::vector<int32_t> mask_;   // argmax per output (index in the input plane), training only
  Shape mask_shape_;
  bool mask_valid_ = false;
  std::vector<float> scratch_y_;
};

}  // namespace

std::unique_ptr<Layer> make_maxpool(const Attrs& a) { return std::make_unique<Pool>(a, true); }
std::unique_ptr<Layer> make_avgpool(const Attrs& a) { return std::make_unique<Pool>(a, false); }

}  // namespace deftnn::ops
