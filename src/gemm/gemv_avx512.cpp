// GEMV kernels for the N == 1 / M == 1 path, AVX-512F (contract: ukernel.h). gemv_n streams
// 4 rows of A at a time against one load of x (masked k tail); gemv_t keeps a 128-column chunk
// of y in registers (masked column tail).
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_ps() they pass as a don't-care source), which -Werror would make fatal.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "gemm/ukernel.h"

namespace deftnn::gemm {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF)
         : left <= 0 ? static_cast<__mmask16>(0)
                     : static_cast<__mmask16>((1u << left) - 1u);
}

// Horizontal sum without _mm512_reduce_add_ps (GCC 12 warns inside it under -Werror).
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  __m128 s = _mm512_castps512_ps128(v);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R>
inline void rows(int64_t k, float alpha, const float* a, int64_t lda, const float* x, float beta,
                 float* y, int64_t incy) {
  __m512 s[R][2];
  for (int r = 0; r < R; ++r) s[r][0] = s[r][1] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 32 <= k; kk += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + kk), x1 = _mm512_loadu_ps(x + kk + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      s[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + kk), x0, s[r][0]);
      s[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + kk + 16), x1, s[r][1]);
    }
  }
  for (; kk < k; kk += 16) {
    const __mmask16 mk = tail_mask(k - kk);
    const __m512 x0 = _mm512_maskz_loadu_ps(mk, x + kk);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      s[r][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + r * lda + kk), x0, s[r][0]);
  }
  for (int r = 0; r < R; ++r) {
    const float tot = hsum(_mm512_add_ps(s[r][0], s[r][1]));
    float* yi = y + r * incy;
    *yi = beta == 0.0f ? alpha * tot : alpha * tot + beta * *yi;
  }
}

}  // namespace

void sgemv_n__avx512(int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* x, float beta, float* y, int64_t incy) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) rows<4>(k, alpha, a + i * lda, lda, x, beta, y + i * incy, incy);
  for (; i < m; ++i) rows<1>(k, alpha, a + i * lda, lda, x, beta, y + i * incy, incy);
}

void sgemv_t__avx512(int64_t k, int64_t n, float alpha, const float* a, int64_t lda,
                     const float* x, float beta, float* y) {
  constexpr int NV = 8;  // 128 columns per chunk
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j0 = 0; j0 < n; j0 += 16 * NV) {
    __mmask16 mask[NV];
    for (int v = 0; v < NV; ++v) mask[v] = tail_mask(n - j0 - 16 * v);
    __m512 acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
    if (j0 + 16 * NV <= n) {
      for (int64_t kk = 0; kk < k; ++kk) {
        const __m512 xk = _mm512_set1_ps(x[kk]);
        const float* r = a + kk * lda + j0;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          acc[v] = _mm512_fmadd_ps(xk, _mm512_loadu_ps(r + 16 * v), acc[v]);
      }
    } else {
      for (int64_t kk = 0; kk < k; ++kk) {
        const __m512 xk = _mm512_set1_ps(x[kk]);
        const float* r = a + kk * lda + j0;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          acc[v] = _mm512_fmadd_ps(xk, _mm512_maskz_loadu_ps(mask[v], r + 16 * v), acc[v]);
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* p = y + j0 + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], p), r);
      _mm512_mask_storeu_ps(p, mask[v], r);
    }
  }
}

}  // namespace deftnn::gemm
