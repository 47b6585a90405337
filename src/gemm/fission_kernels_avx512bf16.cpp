// Fission tile kernel, AVX512-BF16: native vdpbf16ps, the hardware data fission unit. MR = 32
// rows of A as K pairs (two zmm of 16 (k, k+1) bf16 pairs per k pair), n <= 12 columns of B as
// broadcast K-pair words; fp32 accumulation. Two products per lane per instruction: twice the
// fp32 FMA's flops. Other formats go to the AVX-512 kernels. Contract: src/gemm/fission.h.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "gemm/fission.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 32;

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

template <int NRT>
void tile(int64_t K, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int m,
          float alpha, float beta) {
  constexpr int U = NRT == 1 ? 4 : NRT == 2 ? 2 : 1;
  const int64_t KP = (K + 1) / 2;
  __m512 acc[U][NRT][2];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) acc[u][j][0] = acc[u][j][1] = _mm512_setzero_ps();
  int64_t kp = 0;
  for (; kp + U <= KP; kp += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m512bh a0 = as_bh(_mm512_loadu_si512(a + (kp + u) * MR));
      const __m512bh a1 = as_bh(_mm512_loadu_si512(a + (kp + u) * MR + 16));
#pragma GCC unroll 12
      for (int j = 0; j < NRT; ++j) {
        const __m512bh bj = as_bh(_mm512_set1_epi32(static_cast<int>(b[(kp + u) * NRT + j])));
        acc[u][j][0] = _mm512_dpbf16_ps(acc[u][j][0], a0, bj);
        acc[u][j][1] = _mm512_dpbf16_ps(acc[u][j][1], a1, bj);
      }
    }
  }
  for (; kp < KP; ++kp) {
    const __m512bh a0 = as_bh(_mm512_loadu_si512(a + kp * MR));
    const __m512bh a1 = as_bh(_mm512_loadu_si512(a + kp * MR + 16));
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) {
      const __m512bh bj = as_bh(_mm512_set1_epi32(static_cast<int>(b[kp * NRT + j])));
      acc[0][j][0] = _mm512_dpbf16_ps(acc[0][j][0], a0, bj);
      acc[0][j][1] = _mm512_dpbf16_ps(acc[0][j][1], a1, bj);
    }
  }
  alignas(64) float t[NRT * MR];
#pragma GCC unroll 12
  for (int j = 0; j < NRT; ++j) {
    __m512 s0 = acc[0][j][0], s1 = acc[0][j][1];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      s0 = _mm512_add_ps(s0, acc[u][j][0]);
      s1 = _mm512_add_ps(s1, acc[u][j][1]);
    }
    _mm512_store_ps(t + j * MR, s0);
    _mm512_store_ps(t + j * MR + 16, s1);
  }
  fission_store(t, MR, false, m, NRT, alpha, beta, c, ldc);
}

}  // namespace

void fission_tile__avx512bf16(Format f, int64_t K, const void* a, const void* b, float* c,
                              int64_t ldc, int m, int n, float alpha, float beta) {
  if (f != Format::bf16) {
    fission_tile__avx512(f, K, a, b, c, ldc, m, n, alpha, beta);
    return;
  }
  const uint32_t* a32 = static_cast<const uint32_t*>(a);
  const uint32_t* b32 = static_cast<const uint32_t*>(b);
  switch (n) {
#define DEFTNN_FIS_CASE(N) \
  case N: tile<N>(K, a32, b32, c, ldc, m, alpha, beta); break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3) DEFTNN_FIS_CASE(4)
    DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6) DEFTNN_FIS_CASE(7) DEFTNN_FIS_CASE(8)
    DEFTNN_FIS_CASE(9) DEFTNN_FIS_CASE(10) DEFTNN_FIS_CASE(11) DEFTNN_FIS_CASE(12)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}

}  // namespace deftnn::gemm
