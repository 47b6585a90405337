// max_row for a 3-wide, stride-2 window, AVX-512F (src/ops/pool_rows.h): 16 outputs per step
// from t[2i .. 2i + 32]: evens E = t[2i + 2k], odds O = t[2i + 2k + 1], next evens
// E2 = t[2i + 2k + 2]; y = max(max(E, O), E2) in std::max's operand order. Reads t[0, 2n + 1)
// only (masked loads at the end).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12: _mm512_undefined_* inside the intrinsics
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "gemm/simd_util.h"
#include "ops/pool_rows.h"

namespace deftnn::ops {

void max_row_k3s2__avx512(const float* t, int64_t n, float* y) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int64_t len = 2 * n + 1;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t b = 2 * i;   // t[b ..] feeds outputs i .. i + 15
    const __m512 lo = _mm512_maskz_loadu_ps(simd::tail_mask(len - b), t + b);
    const __m512 hi = _mm512_maskz_loadu_ps(simd::tail_mask(len - b - 16), t + b + 16);
    const __m512 lo2 = _mm512_maskz_loadu_ps(simd::tail_mask(len - b - 2), t + b + 2);
    const __m512 hi2 = _mm512_maskz_loadu_ps(simd::tail_mask(len - b - 18), t + b + 18);
    const __m512 e = _mm512_permutex2var_ps(lo, even, hi);
    const __m512 o = _mm512_permutex2var_ps(lo, odd, hi);
    const __m512 e2 = _mm512_permutex2var_ps(lo2, even, hi2);
    // m = e; m = std::max(m, o) = max_ps(o, m); m = std::max(m, e2) = max_ps(e2, m).
    const __m512 m = _mm512_max_ps(e2, _mm512_max_ps(o, e));
    _mm512_mask_storeu_ps(y + i, simd::tail_mask(n - i), m);
  }
}

namespace {
// EDGE: columns outside [w0, w1) are -inf; otherwise every column of [0, 2n + 1) is valid and
// the range test and blend are skipped (they cost ~20% on 111-wide rows).
template <bool EDGE>
void rows3_k3s2(const float* r0, const float* r1, const float* r2, int64_t n, int64_t w0,
                int64_t w1, float* y) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t len = 2 * n + 1;
  // t[o .. o + 16): the column maxima inside [w0, w1), -inf outside;
  // std::max(std::max(a, b), c) = max_ps(c, max_ps(b, a)).
  auto vcol = [&](int64_t o) {
    __mmask16 k;
    if constexpr (EDGE) {
      k = simd::lanes_in(w0 - o, w1 - o);
    } else {
      k = simd::tail_mask(len - o);
    }
    const __m512 a = _mm512_maskz_loadu_ps(k, r0 + o);
    const __m512 b = _mm512_maskz_loadu_ps(k, r1 + o);
    const __m512 c = _mm512_maskz_loadu_ps(k, r2 + o);
    const __m512 m = _mm512_max_ps(c, _mm512_max_ps(b, a));
    if constexpr (EDGE) return _mm512_mask_blend_ps(k, ninf, m);
    return m;
  };
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t b = 2 * i;
    const __m512 lo = vcol(b), hi = vcol(b + 16), lo2 = vcol(b + 2), hi2 = vcol(b + 18);
    const __m512 e = _mm512_permutex2var_ps(lo, even, hi);
    const __m512 o = _mm512_permutex2var_ps(lo, odd, hi);
    const __m512 e2 = _mm512_permutex2var_ps(lo2, even, hi2);
    _mm512_mask_storeu_ps(y + i, simd::tail_mask(n - i), _mm512_max_ps(e2, _mm512_max_ps(o, e)));
  }
}
}  // namespace

void max_rows3_k3s2__avx512(const float* r0, const float* r1, const float* r2, int64_t n,
                            int64_t w0, int64_t w1, float* y) {
  if (w0 <= 0 && w1 >= 2 * n + 1)
    rows3_k3s2<false>(r0, r1, r2, n, w0, w1, y);
  else
    rows3_k3s2<true>(r0, r1, r2, n, w0, w1, y);
}

// 16 outputs per step from 32 columns of each row: evens and odds split by vpermt2ps;
// std::max(a, b) = max_ps(b, a) bit for bit (NaN and signed zeros included).
void max_rows2_k2s2__avx512(const float* r0, const float* r1, int64_t n, float* y) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int64_t len = 2 * n;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t b = 2 * i;
    const __mmask16 k0 = simd::tail_mask(len - b), k1 = simd::tail_mask(len - b - 16);
    const __m512 a0 = _mm512_maskz_loadu_ps(k0, r0 + b), a1 = _mm512_maskz_loadu_ps(k1, r0 + b + 16);
    const __m512 c0 = _mm512_maskz_loadu_ps(k0, r1 + b), c1 = _mm512_maskz_loadu_ps(k1, r1 + b + 16);
    const __m512 ab = _mm512_max_ps(_mm512_permutex2var_ps(a0, odd, a1),
                                    _mm512_permutex2var_ps(a0, even, a1));
    const __m512 cd = _mm512_max_ps(_mm512_permutex2var_ps(c0, odd, c1),
                                    _mm512_permutex2var_ps(c0, even, c1));
    _mm512_mask_storeu_ps(y + i, simd::tail_mask(n - i), _mm512_max_ps(cd, ab));
  }
}

}  // namespace deftnn::ops
