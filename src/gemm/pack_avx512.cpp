// AVX-512 packing kernels (src/gemm/pack.h; called only after runtime dispatch).
#include <immintrin.h>

#include <cstdint>

#include "gemm/pack.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {

void pack_b_idx_t32_rows__avx512(int64_t kc, int n, const float* b, int64_t ldb,
                                 const int64_t* kidx, float* d) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i vidx = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(ldb)));
  const __mmask16 m0 = simd::tail_mask(n), m1 = simd::tail_mask(n - 16);
  const float* hi = b + 16 * ldb;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t r = kidx[k];
    _mm512_storeu_ps(d + k * 32, _mm512_mask_i32gather_ps(zero, m0, vidx, b + r, 4));
    _mm512_storeu_ps(d + k * 32 + 16,
                     m1 ? _mm512_mask_i32gather_ps(zero, m1, vidx, hi + r, 4) : zero);
  }
}

}  // namespace deftnn::gemm
