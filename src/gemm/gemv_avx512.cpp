// GEMV kernels for the N == 1 / M == 1 path, AVX-512F (contract: ukernel.h). gemv_n streams
// 4 rows of A at a time against one load of x (masked k tail); gemv_t accumulates up to 1024 columns
// of y in an L1 buffer while 4 rows of A stream by (masked column tail).
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_ps() they pass as a don't-care source), which -Werror would make fatal.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/ukernel.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

using simd::hsum;
using simd::tail_mask;



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
  // Column chunks of up to 1024 accumulate in an L1-resident buffer while 4 rows of A stream
  // by per step (long contiguous reads per row, unlike a register-only 128-column chunk that
  // touches only 512 bytes of each row per pass).
  constexpr int64_t W = 1024;
  alignas(64) float acc[W];
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j0 = 0; j0 < n; j0 += W) {
    const int64_t w = std::min(W, n - j0);
    const int64_t nv = (w + 15) / 16;
    const __mmask16 last = tail_mask(w - (nv - 1) * 16);
    for (int64_t v = 0; v < nv; ++v) _mm512_store_ps(acc + 16 * v, _mm512_setzero_ps());
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
      const float* r0 = a + kk * lda + j0;
      const float* r1 = r0 + lda;
      const float* r2 = r1 + lda;
      const float* r3 = r2 + lda;
      const __m512 x0 = _mm512_set1_ps(x[kk]), x1 = _mm512_set1_ps(x[kk + 1]);
      const __m512 x2 = _mm512_set1_ps(x[kk + 2]), x3 = _mm512_set1_ps(x[kk + 3]);
      int64_t v = 0;
      for (; v < nv - 1; ++v) {
        __m512 t = _mm512_load_ps(acc + 16 * v);
        t = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r0 + 16 * v), t);
        t = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r1 + 16 * v), t);
        t = _mm512_fmadd_ps(x2, _mm512_loadu_ps(r2 + 16 * v), t);
        t = _mm512_fmadd_ps(x3, _mm512_loadu_ps(r3 + 16 * v), t);
        _mm512_store_ps(acc + 16 * v, t);
      }
      __m512 t = _mm512_load_ps(acc + 16 * v);
      t = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(last, r0 + 16 * v), t);
      t = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(last, r1 + 16 * v), t);
      t = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(last, r2 + 16 * v), t);
      t = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(last, r3 + 16 * v), t);
      _mm512_store_ps(acc + 16 * v, t);
    }
    for (; kk < k; ++kk) {
      const float* r0 = a + kk * lda + j0;
      const __m512 x0 = _mm512_set1_ps(x[kk]);
      for (int64_t v = 0; v < nv; ++v) {
        const __mmask16 m = v == nv - 1 ? last : static_cast<__mmask16>(0xFFFF);
        _mm512_store_ps(acc + 16 * v, _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r0 + 16 * v),
                                                      _mm512_load_ps(acc + 16 * v)));
      }
    }
    for (int64_t v = 0; v < nv; ++v) {
      const __mmask16 m = v == nv - 1 ? last : static_cast<__mmask16>(0xFFFF);
      float* p = y + j0 + 16 * v;
      __m512 r = _mm512_mul_ps(va, _mm512_load_ps(acc + 16 * v));
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, p), r);
      _mm512_mask_storeu_ps(p, m, r);
    }
  }
}

}  // namespace deftnn::gemm
