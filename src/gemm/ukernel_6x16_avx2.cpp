// sgemm micro-kernel, 6 x 16 tile, AVX2 + FMA: 12 ymm accumulators, two B vectors per k, A
// broadcast. Right-edge tiles with n <= 8 run the 6 x 8 half. Contract: see ukernel.h.
// Compiled with -mavx2 -mfma; only called after dispatch (config.cpp) checked the CPU.
#include <immintrin.h>

#include "gemm/simd_util.h"
#include "gemm/ukernel.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

// NV vectors of 8 computed out of a B panel NR wide.
template <int NV>
inline void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                 float alpha, float beta) {
  __m256 acc[MR][NV];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    // The packed A strip ahead, as the AVX-512 kernel does (see ukernel_12x32_avx512).
    simd::prefetch_ahead<MR * sizeof(float)>(a + k * MR);
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + k * NR + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + k * MR + i);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
  if (m == MR && n == NV * 8) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + 8 * v;
        __m256 r = _mm256_mul_ps(va, acc[i][v]);
        if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), r);
        _mm256_storeu_ps(p, r);
      }
    return;
  }
  alignas(32) float t[MR][NV * 8];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_store_ps(&t[i][8 * v], acc[i][v]);
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < n; ++j) ci[j] = alpha * t[i][j];
    } else {
      for (int j = 0; j < n; ++j) ci[j] = alpha * t[i][j] + beta * ci[j];
    }
  }
}

}  // namespace

void sgemm_ukernel_6x16__avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              int m, int n, float alpha, float beta) {
  if (n <= 8)
    tile<1>(kc, a, b, c, ldc, m, n, alpha, beta);
  else
    tile<2>(kc, a, b, c, ldc, m, n, alpha, beta);
}

}  // namespace deftnn::gemm
