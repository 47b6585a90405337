#include "ops/im2col.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace deftnn::ops {
namespace {

// The output columns ow in [lo, hi) whose input column iw = ow * s - p + off lies in [0, W).
inline void valid_range(int64_t n_out, int64_t s, int64_t p, int64_t off, int64_t W, int64_t& lo,
                        int64_t& hi) {
  // iw >= 0  <=>  ow >= ceil((p - off) / s)
  int64_t a = p - off;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  // iw <= W - 1  <=>  ow <= floor((W - 1 + p - off) / s)
  int64_t b = W - 1 + p - off;
  hi = b < 0 ? 0 : b / s + 1;
  lo = std::min(lo, n_out);
  hi = std::clamp(hi, lo, n_out);
}

// Parallelise over rows only outside other parallel regions and when there is enough work.
inline bool par_rows(const ConvGeom& g, int64_t nrows) {
  return nrows > 1 && nrows * g.cols() >= (1 << 16) && !omp_in_parallel() &&
         omp_get_max_threads() > 1;
}

}  // namespace

void im2col_row(const ConvGeom& g, const float* x, int64_t r, float* out) {
  const int64_t j = r % g.kw, i = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
  const float* xc = x + c * g.H * g.W;
  const int64_t hoff = i * g.dh, woff = j * g.dw;
  int64_t oh0, oh1, ow0, ow1;
  valid_range(g.OH, g.sh, g.pt, hoff, g.H, oh0, oh1);
  valid_range(g.OW, g.sw, g.pl, woff, g.W, ow0, ow1);
  std::fill(out, out + oh0 * g.OW, 0.0f);
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* o = out + oh * g.OW;
    const float* xr = xc + (oh * g.sh - g.pt + hoff) * g.W;
    for (int64_t ow = 0; ow < ow0; ++ow) o[ow] = 0.0f;
    if (g.sw == 1) {
      const float* src = xr + (ow0 - g.pl + woff);
      std::memcpy(o + ow0, src, sizeof(float) * static_cast<size_t>(ow1 - ow0));
    } else {
      const int64_t s = g.sw;
      const float* src = xr + (ow0 * s - g.pl + woff);
      for (int64_t ow = ow0; ow < ow1; ++ow, src += s) o[ow] = *src;
    }
    for (int64_t ow = ow1; ow < g.OW; ++ow) o[ow] = 0.0f;
  }
  std::fill(out + oh1 * g.OW, out + g.OH * g.OW, 0.0f);
}

void col2im_row(const ConvGeom& g, const float* col_row, int64_t r, float* dx) {
  const int64_t j = r % g.kw, i = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
  float* xc = dx + c * g.H * g.W;
  const int64_t hoff = i * g.dh, woff = j * g.dw;
  int64_t oh0, oh1, ow0, ow1;
  valid_range(g.OH, g.sh, g.pt, hoff, g.H, oh0, oh1);
  valid_range(g.OW, g.sw, g.pl, woff, g.W, ow0, ow1);
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const float* o = col_row + oh * g.OW;
    float* xr = xc + (oh * g.sh - g.pt + hoff) * g.W;
    if (g.sw == 1) {
      float* dst = xr + (ow0 - g.pl + woff);
      const int64_t n = ow1 - ow0;
      for (int64_t k = 0; k < n; ++k) dst[k] += o[ow0 + k];
    } else {
      const int64_t s = g.sw;
      float* dst = xr + (ow0 * s - g.pl + woff);
      for (int64_t ow = ow0; ow < ow1; ++ow, dst += s) *dst += o[ow];
    }
  }
}

void im2col_range(const ConvGeom& g, const float* x, int64_t r0, int64_t r1, float* col,
                  int64_t ld) {
  const int64_t n = ld > 0 ? ld : g.cols();
#pragma omp parallel for schedule(static) if (par_rows(g, r1 - r0))
  for (int64_t r = r0; r < r1; ++r) im2col_row(g, x, r, col + (r - r0) * n);
}

void im2col(const ConvGeom& g, const float* x, float* col, int64_t ld) {
  im2col_range(g, x, 0, g.rows(), col, ld);
}

void im2col_rows(const ConvGeom& g, const float* x, const int64_t* rows, int64_t nrows, float* col,
                 int64_t ld) {
  const int64_t n = ld > 0 ? ld : g.cols();
#pragma omp parallel for schedule(static) if (par_rows(g, nrows))
  for (int64_t k = 0; k < nrows; ++k) im2col_row(g, x, rows[k], col + k * n);
}

void col2im(const ConvGeom& g, const float* col, float* dx) {
  const int64_t n = g.cols(), plane = g.H * g.W, kk = g.kh * g.kw;
  // Rows of one channel write only that channel's plane: parallel over channels is race-free.
#pragma omp parallel for schedule(static) if (par_rows(g, g.rows()) && g.C > 1)
  for (int64_t c = 0; c < g.C; ++c) {
    std::fill(dx + c * plane, dx + (c + 1) * plane, 0.0f);
    for (int64_t r = c * kk; r < (c + 1) * kk; ++r) col2im_row(g, col + r * n, r, dx);
  }
}

void col2im_rows(const ConvGeom& g, const float* col, const int64_t* rows, int64_t nrows, float* dx,
                 int64_t ld) {
  const int64_t n = ld > 0 ? ld : g.cols();
  std::fill(dx, dx + g.C * g.H * g.W, 0.0f);
  for (int64_t k = 0; k < nrows; ++k) col2im_row(g, col + k * n, rows[k], dx);
}

}  // namespace deftnn::ops
