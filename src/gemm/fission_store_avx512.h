// The tile store of the AVX-512 fission kernels (fission_kernels_avx512*.cpp only: needs
// AVX-512F at compile time). A fission tile accumulates columns of C (one zmm = 16 rows of one
// column j); C is row-major, so the tile is transposed in registers (16 x 16: unpack ps, unpack
// pd, two rounds of shuffle_f32x4, 64 shuffles) and each row is one masked store of the tile's
// n <= 16 columns, alpha and beta applied on whole rows. Replaces a scalar scatter of MR x n
// floats through a stack buffer (conv1: a quarter of the tile kernel's time).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "gemm/fission.h"

namespace deftnn::gemm {

// col[j], j < n (lane r = row r of column j) -> row r of the tile stored at c + (row0 + r * rstep)
// * ldc for every r with row0 + r * rstep < m: C = alpha * tile + beta * C (beta == 0: C not read).
template <int N>
inline void fission_store_cols16(const __m512 (&col)[N], int row0, int rstep, int m, float alpha,
                                 float beta, float* c, int64_t ldc, const TileRows* rows) {
  static_assert(N >= 1 && N <= 16);
  __m512 x[16], t[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) x[j] = j < N ? col[j] : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]);
  }
  // u[4i + r], 128-bit block b: row 4b + r, columns 4i .. 4i + 3.
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
    x[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    x[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    x[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    x[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  __m512 row[16];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    const __m512 v0 = _mm512_shuffle_f32x4(x[r], x[4 + r], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(x[r], x[4 + r], 0xDD);
    const __m512 v2 = _mm512_shuffle_f32x4(x[8 + r], x[12 + r], 0x88);
    const __m512 v3 = _mm512_shuffle_f32x4(x[8 + r], x[12 + r], 0xDD);
    row[r] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    row[8 + r] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    row[4 + r] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    row[12 + r] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << N) - 1);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) {
    const int i = row0 + r * rstep;
    if (i >= m) break;
    float* cr = c + i * ldc;
    __m512 v = alpha == 1.0f ? row[r] : _mm512_mul_ps(row[r], va);
    if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, cr), vb, v);
    if (rows) {   // the conv output pass (TileRows), in registers
      if (rows->bias) v = _mm512_add_ps(v, _mm512_set1_ps(rows->bias[i]));
      if (rows->res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, rows->res + i * rows->ldr));
      if (rows->relu) {
        const __m512 zero = _mm512_setzero_ps();
        const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        v = _mm512_mask_blend_ps(pos, _mm512_mul_ps(zero, v), v);
      }
    }
    _mm512_mask_storeu_ps(cr, mask, v);
  }
}

// A 32-row tile: s0[j] / s1[j] hold rows 0..15 / 16..31 of column j, or with eo (Deft-16 words
// split into even and odd rows) the even / odd rows.
template <int N>
inline void fission_store_tile32(const __m512 (&s0)[N], const __m512 (&s1)[N], bool eo, int m,
                                 float alpha, float beta, float* c, int64_t ldc,
                                 const TileRows* rows = nullptr) {
  if (eo) {
    fission_store_cols16(s0, 0, 2, m, alpha, beta, c, ldc, rows);
    if (m > 1) fission_store_cols16(s1, 1, 2, m, alpha, beta, c, ldc, rows);
  } else {
    fission_store_cols16(s0, 0, 1, m, alpha, beta, c, ldc, rows);
    if (m > 16) fission_store_cols16(s1, 16, 1, m, alpha, beta, c, ldc, rows);
  }
}

}  // namespace deftnn::gemm
