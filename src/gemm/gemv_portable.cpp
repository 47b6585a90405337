// GEMV kernels for the N == 1 / M == 1 path, plain C++ (contract: ukernel.h). Explicit 8-lane
// partial sums let the compiler vectorise the dot products without reassociation flags.
#include "gemm/ukernel.h"

namespace deftnn::gemm {

void sgemv_n__portable(int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
                       const float* x, float beta, float* y, int64_t incy) {
  for (int64_t i = 0; i < m; ++i) {
    const float* r = a + i * lda;
    float part[8] = {};
    int64_t kk = 0;
    for (; kk + 8 <= k; kk += 8)
      for (int l = 0; l < 8; ++l) part[l] += r[kk + l] * x[kk + l];
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += part[l];
    for (; kk < k; ++kk) s += r[kk] * x[kk];
    float* yi = y + i * incy;
    *yi = beta == 0.0f ? alpha * s : alpha * s + beta * *yi;
  }
}

void sgemv_t__portable(int64_t k, int64_t n, float alpha, const float* a, int64_t lda,
                       const float* x, float beta, float* y) {
  constexpr int64_t W = 256;  // a column chunk of y stays in L1 while all k rows stream by
  float acc[W];
  for (int64_t j0 = 0; j0 < n; j0 += W) {
    const int64_t w = n - j0 < W ? n - j0 : W;
    for (int64_t j = 0; j < w; ++j) acc[j] = 0.0f;
    for (int64_t kk = 0; kk < k; ++kk) {
      const float xk = x[kk];
      const float* r = a + kk * lda + j0;
      for (int64_t j = 0; j < w; ++j) acc[j] += xk * r[j];
    }
    for (int64_t j = 0; j < w; ++j)
      y[j0 + j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * y[j0 + j];
  }
}

}  // namespace deftnn::gemm
