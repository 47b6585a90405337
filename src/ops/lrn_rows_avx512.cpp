// lrn_b075 (src/ops/lrn_rows.h), AVX-512F: four vectors of 16 positions at a time, so four
// running sums are in flight while the square roots of the previous channel complete. Same
// arithmetic as the portable reference (fma for the sums, IEEE sqrt and division).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/simd_util.h"
#include "ops/lrn_rows.h"

namespace deftnn::ops {

void lrn_b075__avx512(const float* x, int64_t C, int64_t S, int64_t pre, int64_t post, float a,
                      float k, int64_t s0, int64_t s1, float* y) {
  constexpr int V = 4;
  const __m512 va = _mm512_set1_ps(a), vk = _mm512_set1_ps(k), zero = _mm512_setzero_ps();
  for (int64_t s = s0; s < s1; s += 16 * V) {
    __mmask16 m[V];
    __m512 acc[V];
    for (int v = 0; v < V; ++v) {
      m[v] = simd::tail_mask(s1 - s - 16 * v);
      acc[v] = zero;
    }
    auto add = [&](int64_t c, bool sub) {
      const float* r = x + c * S + s;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        const __m512 xv = _mm512_maskz_loadu_ps(m[v], r + 16 * v);
        acc[v] = sub ? _mm512_fnmadd_ps(xv, xv, acc[v]) : _mm512_fmadd_ps(xv, xv, acc[v]);
      }
    };
    for (int64_t c = 0; c < std::min(post, C); ++c) add(c, false);
    for (int64_t c = 0; c < C; ++c) {
      if (c + post < C) add(c + post, false);
      if (c - pre - 1 >= 0) add(c - pre - 1, true);
      const float* r = x + c * S + s;
      float* o = y + c * S + s;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        if (!m[v]) break;
        const __m512 sc = _mm512_fmadd_ps(va, _mm512_max_ps(acc[v], zero), vk);
        const __m512 q = _mm512_sqrt_ps(sc);
        const __m512 xv = _mm512_maskz_loadu_ps(m[v], r + 16 * v);
        _mm512_mask_storeu_ps(o + 16 * v, m[v],
                              _mm512_div_ps(xv, _mm512_mul_ps(q, _mm512_sqrt_ps(q))));
      }
    }
  }
}

}  // namespace deftnn::ops
