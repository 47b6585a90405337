// Fission tile kernels, AVX2 + FMA + F16C: MR = 16 rows of A (two ymm per k) x n <= 6 broadcast
// columns of B. No native bf16 here: Deft-16 is widened by shift (even rows) and AND (odd rows),
// Deft-16Q skips the AND (its odd rows are the words themselves) - the software data fission of
// the paper, where the saved instruction shows. Contract: src/gemm/fission.h.
#include <immintrin.h>

#include "gemm/fission.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 16;

struct WF32 {
  static constexpr bool kEo = false;
  const float* a;
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = _mm256_loadu_ps(a + k * MR);
    h1 = _mm256_loadu_ps(a + k * MR + 8);
  }
};
struct WHalf {
  static constexpr bool kEo = false;
  const uint16_t* a;
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR)));
    h1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR + 8)));
  }
};
template <bool Quick>
struct WDeft16 {
  static constexpr bool kEo = true;
  const uint16_t* a;
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k * MR));
    h0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    if constexpr (Quick)
      h1 = _mm256_castsi256_ps(v);   // Deft-16Q: no AND
    else
      h1 = _mm256_castsi256_ps(
          _mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
};
struct WDeft8 {
  static constexpr bool kEo = false;
  const int8_t* a;
  __m128i shift;
  __m256i mask;
  __m256 scale;
  inline __m256 widen(__m128i bytes) const {
    __m256i v = _mm256_cvtepi8_epi32(bytes);
    v = _mm256_and_si256(_mm256_sll_epi32(v, shift), mask);
    return _mm256_mul_ps(_mm256_castsi256_ps(v), scale);
  }
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = widen(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + k * MR)));
    h1 = widen(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + k * MR + 8)));
  }
};

template <int NRT, class W>
void tile(const W& w, int64_t K, const float* b, float* c, int64_t ldc, int m, float alpha,
          float beta) {
  constexpr int U = NRT == 1 ? 4 : NRT == 2 ? 2 : 1;
  __m256 acc[U][NRT][2];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 6
    for (int j = 0; j < NRT; ++j) acc[u][j][0] = acc[u][j][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + U <= K; k += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      __m256 h0, h1;
      w.load(k + u, h0, h1);
#pragma GCC unroll 6
      for (int j = 0; j < NRT; ++j) {
        const __m256 bj = _mm256_broadcast_ss(b + (k + u) * NRT + j);
        acc[u][j][0] = _mm256_fmadd_ps(h0, bj, acc[u][j][0]);
        acc[u][j][1] = _mm256_fmadd_ps(h1, bj, acc[u][j][1]);
      }
    }
  }
  for (; k < K; ++k) {
    __m256 h0, h1;
    w.load(k, h0, h1);
#pragma GCC unroll 6
    for (int j = 0; j < NRT; ++j) {
      const __m256 bj = _mm256_broadcast_ss(b + k * NRT + j);
      acc[0][j][0] = _mm256_fmadd_ps(h0, bj, acc[0][j][0]);
      acc[0][j][1] = _mm256_fmadd_ps(h1, bj, acc[0][j][1]);
    }
  }
  alignas(32) float t[NRT * MR];
#pragma GCC unroll 6
  for (int j = 0; j < NRT; ++j) {
    __m256 s0 = acc[0][j][0], s1 = acc[0][j][1];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      s0 = _mm256_add_ps(s0, acc[u][j][0]);
      s1 = _mm256_add_ps(s1, acc[u][j][1]);
    }
    _mm256_store_ps(t + j * MR, s0);
    _mm256_store_ps(t + j * MR + 8, s1);
  }
  fission_store(t, MR, W::kEo, m, NRT, alpha, beta, c, ldc);
}

template <class W>
void dispatch_n(const W& w, int64_t K, const float* b, float* c, int64_t ldc, int m, int n,
                float alpha, float beta) {
  switch (n) {
#define DEFTNN_FIS_CASE(N) \
  case N: tile<N>(w, K, b, c, ldc, m, alpha, beta); break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3)
    DEFTNN_FIS_CASE(4) DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}

}  // namespace

void fission_tile__avx2(Format f, int64_t K, const void* a, const void* b, float* c, int64_t ldc,
                        int m, int n, float alpha, float beta) {
  const float* bf = static_cast<const float*>(b);
  switch (f) {
    case Format::f32:
      dispatch_n(WF32{static_cast<const float*>(a)}, K, bf, c, ldc, m, n, alpha, beta);
      return;
    case Format::half:
      dispatch_n(WHalf{static_cast<const uint16_t*>(a)}, K, bf, c, ldc, m, n, alpha, beta);
      return;
    case Format::deft16:
    case Format::bf16:   // no native bf16 on AVX2: widen by shift like deft16
      dispatch_n(WDeft16<false>{static_cast<const uint16_t*>(a)}, K, bf, c, ldc, m, n, alpha,
                 beta);
      return;
    case Format::deft16q:
      dispatch_n(WDeft16<true>{static_cast<const uint16_t*>(a)}, K, bf, c, ldc, m, n, alpha,
                 beta);
      return;
    default: {
      const Deft8Widen d = deft8_widen(f);
      const WDeft8 w{static_cast<const int8_t*>(a), _mm_cvtsi32_si128(d.shift),
                     _mm256_set1_epi32(static_cast<int>(d.mask)), _mm256_set1_ps(d.scale)};
      dispatch_n(w, K, bf, c, ldc, m, n, alpha, beta);
      return;
    }
  }
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {

// fp32 B panel straight from the padded, phased image (contract: src/gemm/fission.h), nq <= 8:
// one masked load per segment per row (masked lanes read as +0.0, so segments combine by OR),
// one masked store.
void panel_f32__avx2(const float* src, const int64_t* rowoff, int64_t K, const PanelSeg* seg,
                     int nseg, int nq, void* dst) {
  float* d = static_cast<float*>(dst);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i all = _mm256_cmpgt_epi32(_mm256_set1_epi32(nq), lanes);
  __m256i m[8];
  const float* base[8];
  for (int s = 0; s < nseg; ++s) {
    const __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(seg[s].lane), lanes);
    const __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(seg[s].lane + seg[s].len), lanes);
    m[s] = _mm256_andnot_si256(lo, hi);
    base[s] = src + (seg[s].off - seg[s].lane);   // lanes below seg[s].lane are masked off
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t o = rowoff[k];
    __m256 v = _mm256_maskload_ps(base[0] + o, m[0]);
    for (int s = 1; s < nseg; ++s) v = _mm256_or_ps(v, _mm256_maskload_ps(base[s] + o, m[s]));
    _mm256_maskstore_ps(d + k * nq, all, v);
  }
}

}  // namespace deftnn::gemm
