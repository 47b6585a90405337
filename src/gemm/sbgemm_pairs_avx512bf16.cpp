// The 12 x 32 vdpbf16ps tile on K-pair words and the B panel packer (sbgemm_pairs.h).
// Compiled with AVX512-BF16; only called after dispatch checked the CPU.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12: _mm512_undefined_* inside the intrinsics
#include <immintrin.h>

#include "gemm/sbgemm_pairs.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 12, NR = 32;

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

template <int NV>
void tile_pairs(int64_t KP, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int m,
                int n) {
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < KP; ++kp) {
    simd::prefetch_ahead<MR * sizeof(uint32_t)>(a + kp * MR);   // as the sgemm tile does
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = as_bh(_mm512_load_si512(b + kp * NR + 16 * v));
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512bh ai = as_bh(_mm512_set1_epi32(static_cast<int>(a[kp * MR + i])));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(c + i * ldc + 16 * v, simd::tail_mask(n - 16 * v), acc[i][v]);
  }
}

// 16 x 16 transpose of 32-bit elements: r[i] (element j) -> r[j] (element i).
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // r[4q + p] now holds, in each 128-bit lane L, elements 4L..4L+3 of column... (rows 4q..4q+3,
  // column 4L + p); regroup the 128-bit lanes across the four rows of each quad.
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const __m512i a0 = _mm512_shuffle_i32x4(r[p], r[4 + p], 0x88);     // lanes 0,2 of each
    const __m512i a1 = _mm512_shuffle_i32x4(r[p], r[4 + p], 0xDD);     // lanes 1,3
    const __m512i b0 = _mm512_shuffle_i32x4(r[8 + p], r[12 + p], 0x88);
    const __m512i b1 = _mm512_shuffle_i32x4(r[8 + p], r[12 + p], 0xDD);
    t[p] = _mm512_shuffle_i32x4(a0, b0, 0x88);        // lane 0
    t[8 + p] = _mm512_shuffle_i32x4(a0, b0, 0xDD);    // lane 2
    t[4 + p] = _mm512_shuffle_i32x4(a1, b1, 0x88);    // lane 1
    t[12 + p] = _mm512_shuffle_i32x4(a1, b1, 0xDD);   // lane 3
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

}  // namespace

void sbgemm_pairs_12x32__avx512bf16(int64_t KP, const uint32_t* a, const uint32_t* b, float* c,
                                    int64_t ldc, int m, int n) {
  if (n <= 16)
    tile_pairs<1>(KP, a, b, c, ldc, m, n);
  else
    tile_pairs<2>(KP, a, b, c, ldc, m, n);
}

void pack_pairs_panel32__avx512bf16(const float* X, int64_t ldx, int n, int64_t K, int64_t kp0,
                                    int64_t kp1, uint32_t* panel) {
  // Blocks of 16 pairs x 16 columns: each column's 32 floats rounded to 32 bf16 in memory order
  // (vcvtne2ps2bf16), i.e. its 16 words, then a 16 x 16 transpose: one vector of 16 columns
  // per pair.
  for (int64_t q0 = kp0; q0 < kp1; q0 += 16) {
    const int64_t np = kp1 - q0 < 16 ? kp1 - q0 : 16;   // pairs in this block
    const int64_t k0 = 2 * q0;
    const __mmask16 mlo = simd::lanes_in(0, K - k0), mhi = simd::lanes_in(0, K - k0 - 16);
    for (int j0 = 0; j0 < NR; j0 += 16) {
      __m512i r[16];
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; ++jj) {
        if (j0 + jj >= n) {
          r[jj] = _mm512_setzero_si512();
          continue;
        }
        const float* x = X + (j0 + jj) * ldx + k0;   // elements past K read as 0
        const __m512bh pr = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(mhi, x + 16),
                                                _mm512_maskz_loadu_ps(mlo, x));
        r[jj] = reinterpret_cast<const __m512i&>(pr);
      }
      transpose16(r);
      for (int64_t t = 0; t < np; ++t) _mm512_storeu_si512(panel + (q0 + t) * NR + j0, r[t]);
    }
  }
}

}  // namespace deftnn::gemm
