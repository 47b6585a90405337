// Winograd F(2x2, 3x3) transforms, AVX-512: 16 tiles of one tile row per vector (winograd.h).
// The reference is wino_in__portable / wino_out__portable (winograd.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/simd_util.h"
#include "gemm/winograd.h"

namespace deftnn::gemm {
namespace {

// Lanes e of the 16 floats from column c0 on that lie inside [0, W).
inline __mmask16 cols_in(int64_t c0, int64_t W) {
  const int64_t lo = std::max<int64_t>(-c0, 0), hi = std::min<int64_t>(W - c0, 16);
  return hi > lo ? static_cast<__mmask16>(simd::tail_mask(hi - lo) << lo)
                 : static_cast<__mmask16>(0);
}

}  // namespace

void wino_in__avx512(const WinoInSeg& s) {
  alignas(64) static const int32_t kEven[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  alignas(64) static const int32_t kOdd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  const __m512i ie = _mm512_load_si512(kEven), io = _mm512_load_si512(kOdd);
  // Tile l reads columns col0 + 2l .. col0 + 2l + 3: d0, d1 the even / odd lanes of the 32
  // columns from col0, d2, d3 those of the 32 from col0 + 2. Columns outside the plane load 0.
  const int64_t col0 = 2 * s.tx0 - s.pad_w;
  const __mmask16 ma = cols_in(col0, s.W), mb = cols_in(col0 + 16, s.W);
  const __mmask16 ma2 = cols_in(col0 + 2, s.W), mb2 = cols_in(col0 + 18, s.W);
  const __mmask16 st = simd::tail_mask(s.len);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c = 0; c < s.C; ++c) {
    const float* plane = s.x + c * s.H * s.W;
    __m512 t[4][4];   // row k of the tile times B, lane = tile
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const int64_t r = 2 * s.ty - s.pad_h + k;
      if (r < 0 || r >= s.H) {
        t[k][0] = t[k][1] = t[k][2] = t[k][3] = zero;
        continue;
      }
      const float* row = plane + r * s.W + col0;   // lanes outside the plane are masked off
      const __m512 a = _mm512_maskz_loadu_ps(ma, row), b = _mm512_maskz_loadu_ps(mb, row + 16);
      const __m512 a2 = _mm512_maskz_loadu_ps(ma2, row + 2);
      const __m512 b2 = _mm512_maskz_loadu_ps(mb2, row + 18);
      const __m512 d0 = _mm512_permutex2var_ps(a, ie, b), d1 = _mm512_permutex2var_ps(a, io, b);
      const __m512 d2 = _mm512_permutex2var_ps(a2, ie, b2);
      const __m512 d3 = _mm512_permutex2var_ps(a2, io, b2);
      t[k][0] = _mm512_sub_ps(d0, d2);
      t[k][1] = _mm512_add_ps(d1, d2);
      t[k][2] = _mm512_sub_ps(d2, d1);
      t[k][3] = _mm512_sub_ps(d1, d3);
    }
    float* v = s.v + c * s.nr + s.j0;
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
  // Output columns 2 tx0 + e, e < 2 len, inside the plane: lanes of the interleaved halves.
  const int64_t ncols = std::min<int64_t>(2 * s.len, s.OW - 2 * s.tx0);
  const __mmask16 mlo = simd::tail_mask(ncols), mhi = simd::tail_mask(ncols - 16);
  const int64_t plane = s.OH * s.OW;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < s.m; ++i) {
    __m512 m[16];
#pragma GCC unroll 16
    for (int xi = 0; xi < 16; ++xi)
      m[xi] = _mm512_maskz_loadu_ps(ml, s.mbuf + (xi * s.mr + i) * s.ldm + s.j0);
    __m512 t[2][4];   // A^T m
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      t[0][q] = _mm512_add_ps(_mm512_add_ps(m[q], m[4 + q]), m[8 + q]);
      t[1][q] = _mm512_sub_ps(_mm512_sub_ps(m[4 + q], m[8 + q]), m[12 + q]);
    }
    const __m512 bv = s.bias ? _mm512_set1_ps(s.bias[i]) : zero;
#pragma GCC unroll 2
    for (int iy = 0; iy < 2; ++iy) {
      const int64_t row = 2 * s.ty + iy;
      if (row >= s.OH) break;
      __m512 y0 = _mm512_add_ps(_mm512_add_ps(t[iy][0], t[iy][1]), t[iy][2]);
      __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(t[iy][1], t[iy][2]), t[iy][3]);
      if (s.bias) {
        y0 = _mm512_add_ps(y0, bv);
        y1 = _mm512_add_ps(y1, bv);
      }
      __m512 lo = _mm512_permutex2var_ps(y0, ilo, y1), hi = _mm512_permutex2var_ps(y0, ihi, y1);
      const int64_t at = i * plane + row * s.OW + 2 * s.tx0;
      if (s.res) {
        lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(mlo, s.res + at));
        hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(mhi, s.res + at + 16));
      }
      if (s.relu) {   // v > 0 ? v : 0 * v (NaN stays NaN)
        lo = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(lo, zero, _CMP_GT_OQ), _mm512_mul_ps(zero, lo), lo);
        hi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hi, zero, _CMP_GT_OQ), _mm512_mul_ps(zero, hi), hi);
      }
      _mm512_mask_storeu_ps(s.y + at, mlo, lo);
      _mm512_mask_storeu_ps(s.y + at + 16, mhi, hi);
    }
  }
}

}  // namespace deftnn::gemm
