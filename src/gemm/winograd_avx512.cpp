// Winograd F(2x2, 3x3) transforms, AVX-512: a group of 16 consecutive tiles per vector, one part
// (a run within one tile row) after the other (winograd.h).
// The reference is wino_in__portable / wino_out__portable (winograd.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/simd_util.h"
#include "gemm/winograd.h"
#include "gemm/winograd_in_avx512.h"

namespace deftnn::gemm {

void wino_in__avx512(const WinoInSeg& s) {
  const WinoInReader rd(s);
  const __mmask16 st = simd::tail_mask(s.len);
  float* v0 = s.v + (s.j / s.nr) * s.C * s.nr + s.j % s.nr;
  for (int64_t c = 0; c < s.C; ++c) {
    __m512 v[16];
    rd.channel(c, v);
    float* d = v0 + c * s.nr;
#pragma GCC unroll 16
    for (int xi = 0; xi < 16; ++xi) _mm512_mask_storeu_ps(d + xi * s.xi_stride, st, v[xi]);
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
