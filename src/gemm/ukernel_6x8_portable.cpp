// sgemm micro-kernel, 6 x 8 tile, plain C++ (baseline x86-64: the compiler vectorises the 8-wide
// rows to SSE). Contract: see ukernel.h.
#include "gemm/ukernel.h"

namespace deftnn::gemm {

void sgemm_ukernel_6x8__portable(int64_t kc, const float* a, const float* b, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta) {
  constexpr int MR = 6, NR = 8;
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* ak = a + k * MR;
    const float* bk = b + k * NR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] += ak[i] * bk[j];
  }
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < n; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < n; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

}  // namespace deftnn::gemm
