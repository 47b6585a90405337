// sgemm micro-kernel, 12 x 32 tile, AVX-512F: 24 zmm accumulators, two B vectors per k, A
// broadcast from the packed strip. Edge tiles use masked loads/stores (no scalar tail); a
// right-edge tile with n <= 16 runs only the 12 x 16 half. Contract: see ukernel.h. The _ldb
// twin reads an unpacked row-major B in place (unaligned loads, masked beyond column n), the
// _lda twin an unpacked row-major A (12 row streams broadcast from).
// Compiled with -mavx512f...; only called after dispatch (config.cpp) checked the CPU.
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_ps() they pass as a don't-care source), which -Werror would make fatal.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "gemm/simd_util.h"
#include "gemm/ukernel.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;

// B rows are ldb floats apart: NR for a packed panel (aligned loads), or the row stride of an
// unpacked row-major B (unaligned loads, masked at the right edge so nothing past column n is
// read). A is a packed strip (APACKED) or rows lda apart read in place (rows >= m alias row 0:
// computed, never stored).
template <int NV, bool PACKED, bool APACKED = true>
inline void tile(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                 int m, int n, float alpha, float beta, int64_t lda = 0) {
  const float* arow[MR];
  if (!APACKED)
    for (int i = 0; i < MR; ++i) arow[i] = a + (i < m ? i : 0) * lda;
  // Fetch the C tile while the K loop runs: C rows are ldc apart (often 4 KiB, one L1 set),
  // and a C that does not fit L2 would otherwise stall the stores at the end.
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (NV == 2) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // Columns j < n of each 16-wide vector: masks the loads of an unpacked B and the C stores.
  __mmask16 mask[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) mask[v] = simd::tail_mask(n - 16 * v);
  for (int64_t k = 0; k < kc; ++k) {
    // The packed A strip ahead (simd::prefetch_ahead: one line per k covers its 48 bytes). Where A streams
    // from DRAM (fc weights packed once, few columns of B) the hardware prefetchers alone left
    // the kernel waiting on it: 4096 x 9216 weights, 2 threads, N = 8 / 16 / 32 / 64: 5.27 ->
    // 4.13, 5.8 -> 3.9, 8.99 -> 5.88, 15.3 -> 11.96 ms; 1024^3 (A in L2) 5.66 -> 5.50 ms.
    if (APACKED) simd::prefetch_ahead<MR * sizeof(float)>(a + k * MR);
    // An unpacked B's rows are ldb apart: kc streams the hardware prefetchers do not follow,
    // and each panel's first pass (strip 0) waited on them. Its next panel (the next NR
    // columns of the same rows) is fetched while this one runs. 2 threads, hot, in-process
    // A/B: CaffeNet conv1's shape (96 x 363 x 3025) 0.683 -> 0.653 ms, conv2's (128 x 1200 x
    // 729) 0.782 -> 0.724 ms. (Into L2 only: the same.)
    if (!PACKED) {
      _mm_prefetch(reinterpret_cast<const char*>(b + k * ldb + NR), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + k * ldb + NR + 16), _MM_HINT_T0);
    }
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      bv[v] = PACKED ? _mm512_load_ps(b + k * NR + 16 * v)
                     : _mm512_maskz_loadu_ps(mask[v], b + k * ldb + 16 * v);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(APACKED ? a[k * MR + i] : arow[i][k]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], p), r);
      _mm512_mask_storeu_ps(p, mask[v], r);
    }
  }
}

}  // namespace

void sgemm_ukernel_12x32__avx512(int64_t kc, const float* a, const float* b, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta) {
  if (n <= 16)
    tile<1, true>(kc, a, b, NR, c, ldc, m, n, alpha, beta);
  else
    tile<2, true>(kc, a, b, NR, c, ldc, m, n, alpha, beta);
}

void sgemm_ukernel_12x32_ldb__avx512(int64_t kc, const float* a, const float* b, int64_t ldb,
                                     float* c, int64_t ldc, int m, int n, float alpha,
                                     float beta) {
  if (n <= 16)
    tile<1, false>(kc, a, b, ldb, c, ldc, m, n, alpha, beta);
  else
    tile<2, false>(kc, a, b, ldb, c, ldc, m, n, alpha, beta);
}

void sgemm_ukernel_12x32_lda__avx512(int64_t kc, const float* a, int64_t lda, const float* b,
                                     float* c, int64_t ldc, int m, int n, float alpha,
                                     float beta) {
  if (n <= 16)
    tile<1, true, false>(kc, a, b, NR, c, ldc, m, n, alpha, beta, lda);
  else
    tile<2, true, false>(kc, a, b, NR, c, ldc, m, n, alpha, beta, lda);
}

}  // namespace deftnn::gemm
