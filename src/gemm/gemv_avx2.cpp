// GEMV kernels for the N == 1 / M == 1 path, AVX2 + FMA (contract: ukernel.h). gemv_n streams
// 4 rows of A at a time against one load of x; gemv_t keeps a 64-column chunk of y in registers.
#include <immintrin.h>

#include "gemm/ukernel.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

using simd::hsum;


template <int R>
inline void rows(int64_t k, float alpha, const float* a, int64_t lda, const float* x, float beta,
                 float* y, int64_t incy) {
  __m256 s[R][2];
  for (int r = 0; r < R; ++r) s[r][0] = s[r][1] = _mm256_setzero_ps();
  int64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + kk), x1 = _mm256_loadu_ps(x + kk + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      s[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + r * lda + kk), x0, s[r][0]);
      s[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(a + r * lda + kk + 8), x1, s[r][1]);
    }
  }
  float tot[R];
  for (int r = 0; r < R; ++r) {
    tot[r] = hsum(_mm256_add_ps(s[r][0], s[r][1]));
    for (int64_t t = kk; t < k; ++t) tot[r] += a[r * lda + t] * x[t];
    float* yi = y + r * incy;
    *yi = beta == 0.0f ? alpha * tot[r] : alpha * tot[r] + beta * *yi;
  }
}

}  // namespace

void sgemv_n__avx2(int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
                   const float* x, float beta, float* y, int64_t incy) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) rows<4>(k, alpha, a + i * lda, lda, x, beta, y + i * incy, incy);
  for (; i < m; ++i) rows<1>(k, alpha, a + i * lda, lda, x, beta, y + i * incy, incy);
}

void sgemv_t__avx2(int64_t k, int64_t n, float alpha, const float* a, int64_t lda,
                   const float* x, float beta, float* y) {
  constexpr int NV = 8;  // 64 columns per chunk
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  int64_t j0 = 0;
  for (; j0 + 8 * NV <= n; j0 += 8 * NV) {
    __m256 acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k; ++kk) {
      const __m256 xk = _mm256_broadcast_ss(x + kk);
      const float* r = a + kk * lda + j0;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(xk, _mm256_loadu_ps(r + 8 * v), acc[v]);
    }
    for (int v = 0; v < NV; ++v) {
      __m256 r = _mm256_mul_ps(va, acc[v]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(y + j0 + 8 * v), r);
      _mm256_storeu_ps(y + j0 + 8 * v, r);
    }
  }
  if (j0 < n) sgemv_t__portable(k, n - j0, alpha, a + j0, lda, x, beta, y + j0);
}

}  // namespace deftnn::gemm
