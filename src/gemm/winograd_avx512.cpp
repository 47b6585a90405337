// Winograd F(2x2, 3x3) transforms, AVX-512: a group of 16 consecutive tiles per vector, one part
// (a run within one tile row) after the other (winograd.h).
// The reference is wino_in__portable / wino_out__portable (winograd.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/simd_util.h"
#include "gemm/winograd.h"

namespace deftnn::gemm {
namespace {

// Lanes e of the 16 floats from column c0 on that lie inside [0, W).
inline __mmask16 cols_in(int64_t c0, int64_t W) { return simd::lanes_in(-c0, W - c0); }

}  // namespace

void wino_in__avx512(const WinoInSeg& s) {
  alignas(64) static const int32_t kEven[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  alignas(64) static const int32_t kOdd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  const __m512i ie = _mm512_load_si512(kEven), io = _mm512_load_si512(kOdd);
  // Lane l reads columns 2 tx - pad_w .. + 3 of its tile: d0, d1 are the even / odd elements of
  // 32 loaded from element 0 (A | B), d2, d3 those of 32 loaded two columns on (A2 | B2). Part p
  // owns elements [2a, 2b) of both pairs and loads them from its own rows, at an offset that puts
  // its first tile at element 2a; elements outside the plane (or of rows outside it) stay 0.
  constexpr int kMaxParts = 16;   // a part has at least one of the 16 lanes
  const int np = s.nparts;
  const float* base[kMaxParts];   // image + column offset; the row and channel added per load
  int64_t row0[kMaxParts];        // the part's first input row (may be outside the plane)
  __mmask16 m[kMaxParts][4];
  for (int q = 0; q < np; ++q) {
    const WinoPart& p = s.parts[q];
    const int64_t cb = 2 * p.tx0 - s.pad_w - 2 * p.a;   // column of element 0
    base[q] = s.x + p.n * s.x_image_stride + cb;
    row0[q] = 2 * p.ty - s.pad_h;
    const int64_t e0 = 2 * p.a, e1 = 2 * p.b;
    m[q][0] = simd::lanes_in(e0, e1) & cols_in(cb, s.W);
    m[q][1] = simd::lanes_in(e0 - 16, e1 - 16) & cols_in(cb + 16, s.W);
    m[q][2] = simd::lanes_in(e0, e1) & cols_in(cb + 2, s.W);
    m[q][3] = simd::lanes_in(e0 - 16, e1 - 16) & cols_in(cb + 18, s.W);
  }
  const __mmask16 st = simd::tail_mask(s.len);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t HW = s.H * s.W;
  float* v0 = s.v + (s.j / s.nr) * s.C * s.nr + s.j % s.nr;
  for (int64_t c = 0; c < s.C; ++c) {
    __m512 t[4][4];   // row k of the tiles times B, lane = tile
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512 a = zero, b = zero, a2 = zero, b2 = zero;
      for (int q = 0; q < np; ++q) {
        const int64_t r = row0[q] + k;
        if (r < 0 || r >= s.H) continue;
        const float* row = base[q] + c * HW + r * s.W;   // masked-off lanes are never read
        a = _mm512_mask_loadu_ps(a, m[q][0], row);
        b = _mm512_mask_loadu_ps(b, m[q][1], row + 16);
        a2 = _mm512_mask_loadu_ps(a2, m[q][2], row + 2);
        b2 = _mm512_mask_loadu_ps(b2, m[q][3], row + 18);
      }
      const __m512 d0 = _mm512_permutex2var_ps(a, ie, b), d1 = _mm512_permutex2var_ps(a, io, b);
      const __m512 d2 = _mm512_permutex2var_ps(a2, ie, b2);
      const __m512 d3 = _mm512_permutex2var_ps(a2, io, b2);
      t[k][0] = _mm512_sub_ps(d0, d2);
      t[k][1] = _mm512_add_ps(d1, d2);
      t[k][2] = _mm512_sub_ps(d2, d1);
      t[k][3] = _mm512_sub_ps(d1, d3);
    }
    float* v = v0 + c * s.nr;
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {   // B^T (d B), column q
      _mm512_mask_storeu_ps(v + (0 + q) * s.xi_stride, st, _mm512_sub_ps(t[0][q], t[2][q]));
      _mm512_mask_storeu_ps(v + (4 + q) * s.xi_stride, st, _mm512_add_ps(t[1][q], t[2][q]));
      _mm512_mask_storeu_ps(v + (8 + q) * s.xi_stride, st, _mm512_sub_ps(t[2][q], t[1][q]));
      _mm512_mask_storeu_ps(v + (12 + q) * s.xi_stride, st, _mm512_sub_ps(t[1][q], t[3][q]));
    }
  }
}

void wino_out__avx512(const WinoOutSeg& s) {
  alignas(64) static const int32_t kLo[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  alignas(64) static const int32_t kHi[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i ilo = _mm512_load_si512(kLo), ihi = _mm512_load_si512(kHi);
  const __mmask16 ml = simd::tail_mask(s.len);
  // The interleaved outputs of output row iy of the tiles: element e of (lo | hi) is column
  // e % 2 of lane e / 2. Part p stores elements [2a, 2b) at its own row, from an offset that puts
  // element 2a at its first tile's column; columns past OW and rows past OH are masked off.
  constexpr int kMaxParts = 16;   // a part has at least one of the 16 lanes
  const int np = s.nparts;
  int64_t off[kMaxParts][2];    // element 0 of output row iy, from the strip's plane 0
  int64_t roff[kMaxParts][2];   // the same in the residual (its own image stride)
  __mmask16 m[kMaxParts][2][2];
  for (int q = 0; q < np; ++q) {
    const WinoPart& p = s.parts[q];
    const int64_t cb = 2 * p.tx0 - 2 * p.a;   // output column of element 0
    const int64_t e0 = 2 * p.a, e1 = std::min<int64_t>(2 * p.b, s.OW - cb);
    for (int iy = 0; iy < 2; ++iy) {
      const int64_t row = 2 * p.ty + iy;
      const bool in = row < s.OH;
      off[q][iy] = p.n * s.y_image_stride + row * s.OW + cb;
      roff[q][iy] = p.n * s.res_image_stride + row * s.OW + cb;
      m[q][iy][0] = in ? simd::lanes_in(e0, e1) : static_cast<__mmask16>(0);
      m[q][iy][1] = in ? simd::lanes_in(e0 - 16, e1 - 16) : static_cast<__mmask16>(0);
    }
  }
  const int64_t plane = s.OH * s.OW;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < s.m; ++i) {
    __m512 m16[16];
#pragma GCC unroll 16
    for (int xi = 0; xi < 16; ++xi)
      m16[xi] = _mm512_maskz_loadu_ps(ml, s.mbuf + (xi * s.mr + i) * s.ldm + s.j);
    __m512 t[2][4];   // A^T m
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      t[0][q] = _mm512_add_ps(_mm512_add_ps(m16[q], m16[4 + q]), m16[8 + q]);
      t[1][q] = _mm512_sub_ps(_mm512_sub_ps(m16[4 + q], m16[8 + q]), m16[12 + q]);
    }
    const __m512 bv = s.bias ? _mm512_set1_ps(s.bias[i]) : zero;
#pragma GCC unroll 2
    for (int iy = 0; iy < 2; ++iy) {
      __m512 y0 = _mm512_add_ps(_mm512_add_ps(t[iy][0], t[iy][1]), t[iy][2]);
      __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(t[iy][1], t[iy][2]), t[iy][3]);
      if (s.bias) {
        y0 = _mm512_add_ps(y0, bv);
        y1 = _mm512_add_ps(y1, bv);
      }
      __m512 lo = _mm512_permutex2var_ps(y0, ilo, y1), hi = _mm512_permutex2var_ps(y0, ihi, y1);
      if (s.res) {
        __m512 rl = zero, rh = zero;
        for (int q = 0; q < np; ++q) {
          const float* r = s.res + i * plane + roff[q][iy];
          rl = _mm512_mask_loadu_ps(rl, m[q][iy][0], r);
          rh = _mm512_mask_loadu_ps(rh, m[q][iy][1], r + 16);
        }
        lo = _mm512_add_ps(lo, rl);
        hi = _mm512_add_ps(hi, rh);
      }
      if (s.relu) {   // v > 0 ? v : 0 * v (NaN stays NaN)
        lo = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(lo, zero, _CMP_GT_OQ), _mm512_mul_ps(zero, lo), lo);
        hi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hi, zero, _CMP_GT_OQ), _mm512_mul_ps(zero, hi), hi);
      }
      for (int q = 0; q < np; ++q) {
        float* p = s.y + i * plane + off[q][iy];
        _mm512_mask_storeu_ps(p, m[q][iy][0], lo);
        _mm512_mask_storeu_ps(p + 16, m[q][iy][1], hi);
      }
    }
  }
}

}  // namespace deftnn::gemm
