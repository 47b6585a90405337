// Fission tile kernels, AVX2 + FMA + F16C: MR = 16 rows of A (two ymm per k) x n <= 6 broadcast
// columns of B. No native bf16 here: Deft-16 is widened by shift (even rows) and AND (odd rows),
// Deft-16Q skips the AND (its odd rows are the words themselves) - the software data fission of
// the paper, where the saved instruction shows. Contract: src/gemm/fission.h.
#include <immintrin.h>

#include "gemm/fission.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 16;

// Partial rows of C: the first N <= 4 floats of an xmm, N <= 8 of a ymm (no masked moves: they
// are slow on AMD).
template <int N>
inline void store_part(float* c, __m128 x) {
  if constexpr (N == 1) _mm_store_ss(c, x);
  if constexpr (N == 2 || N == 3) _mm_storel_pi(reinterpret_cast<__m64*>(c), x);
  if constexpr (N == 3) _mm_store_ss(c + 2, _mm_movehl_ps(x, x));
  if constexpr (N == 4) _mm_storeu_ps(c, x);
}
template <int N>
inline __m128 load_part(const float* c) {
  if constexpr (N == 0) return _mm_setzero_ps();
  if constexpr (N == 1) return _mm_load_ss(c);
  if constexpr (N == 2) return _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(c)));
  if constexpr (N == 3)
    return _mm_movelh_ps(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(c))),
                         _mm_load_ss(c + 2));
  if constexpr (N == 4) return _mm_loadu_ps(c);
}
template <int N>
inline void store_row(float* c, __m256 v) {
  if constexpr (N == 8) {
    _mm256_storeu_ps(c, v);
  } else if constexpr (N >= 4) {
    _mm_storeu_ps(c, _mm256_castps256_ps128(v));
    store_part<N - 4>(c + 4, _mm256_extractf128_ps(v, 1));
  } else {
    store_part<N>(c, _mm256_castps256_ps128(v));
  }
}
template <int N>
inline __m256 load_row(const float* c) {
  if constexpr (N == 8) return _mm256_loadu_ps(c);
  if constexpr (N >= 4 && N < 8)
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(c)), load_part<N - 4>(c + 4), 1);
  if constexpr (N < 4) return _mm256_castps128_ps256(load_part<N>(c));
}

// The tile store: columns col[j] (lane r = row r of column j), j < N <= 8, transposed in
// registers (8 x 8: 24 shuffles) and stored a row at a time at c + (row0 + r * rstep) * ldc for
// row0 + r * rstep < m: C = alpha * tile + beta * C (beta == 0: C not read).
template <int N>
inline void store_cols8(const __m256 (&col)[N], int row0, int rstep, int m, float alpha,
                        float beta, float* c, int64_t ldc) {
  __m256 x[8], t[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) x[j] = j < N ? col[j] : _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(x[2 * i], x[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(x[2 * i], x[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    x[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    x[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    x[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    x[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  __m256 row[8];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    row[r] = _mm256_permute2f128_ps(x[r], x[4 + r], 0x20);
    row[4 + r] = _mm256_permute2f128_ps(x[r], x[4 + r], 0x31);
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) {
    const int i = row0 + r * rstep;
    if (i >= m) break;
    float* cr = c + i * ldc;
    __m256 v = alpha == 1.0f ? row[r] : _mm256_mul_ps(row[r], va);
    if (beta != 0.0f) v = _mm256_fmadd_ps(load_row<N>(cr), vb, v);
    store_row<N>(cr, v);
  }
}

struct WF32 {
  static constexpr bool kEo = false;
  const float* a;
  static constexpr int kBytesPerK = MR * 4;
  const void* base() const { return a; }
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = _mm256_loadu_ps(a + k * MR);
    h1 = _mm256_loadu_ps(a + k * MR + 8);
  }
};
struct WHalf {
  static constexpr bool kEo = false;
  const uint16_t* a;
  static constexpr int kBytesPerK = MR * 2;
  const void* base() const { return a; }
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR)));
    h1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR + 8)));
  }
};
template <bool Quick>
struct WDeft16 {
  static constexpr bool kEo = true;
  const uint16_t* a;
  static constexpr int kBytesPerK = MR * 2;
  const void* base() const { return a; }
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
// Scaled: B is prescaled by 2^(127 - bias) (fission_tile_d8s), so no multiply here.
template <bool Scaled>
struct WDeft8 {
  static constexpr bool kEo = false;
  const int8_t* a;
  static constexpr int kBytesPerK = MR;
  const void* base() const { return a; }
  __m256i shift;
  __m256i mask;
  __m256 scale;
  inline __m256 widen(__m128i bytes) const {
    __m256i v = _mm256_cvtepi8_epi32(bytes);
    v = _mm256_and_si256(_mm256_sllv_epi32(v, shift), mask);
    if constexpr (Scaled) return _mm256_castsi256_ps(v);
    return _mm256_mul_ps(_mm256_castsi256_ps(v), scale);
  }
  inline void load(int64_t k, __m256& h0, __m256& h1) const {
    h0 = widen(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + k * MR)));
    h1 = widen(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + k * MR + 8)));
  }
};

// Prescaled B with the exponent width N at compile time: an immediate shift, so the 16 ymm hold
// the 12 accumulators, 2 widened columns, the broadcast and the mask (with a shift-count register
// too the 6-column tile spilled its accumulators to the stack).
template <int N>
struct WDeft8S {
  static constexpr bool kEo = false;
  const int8_t* a;
  static constexpr int kBytesPerK = MR;
  const void* base() const { return a; }
  inline __m256 widen(__m128i bytes) const {
    const __m256i mask = _mm256_set1_epi32(static_cast<int>(0x80000000u | (0x7Fu << (16 + N))));
    const __m256i v = _mm256_cvtepi8_epi32(bytes);
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(v, 16 + N), mask));
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
  auto step = [&](int u, int64_t kk) __attribute__((always_inline)) {
    __m256 h0, h1;
    w.load(kk, h0, h1);
#pragma GCC unroll 6
    for (int j = 0; j < NRT; ++j) {
      const __m256 bj = _mm256_broadcast_ss(b + kk * NRT + j);
      acc[u][j][0] = _mm256_fmadd_ps(h0, bj, acc[u][j][0]);
      acc[u][j][1] = _mm256_fmadd_ps(h1, bj, acc[u][j][1]);
    }
  };
  // A GEMV (NRT <= 2) reads its strip as U streams (simd::split_steps), a reduced-format one
  // prefetched ahead.
  int64_t k = NRT <= 2 ? simd::split_steps<U, W::kBytesPerK>(
                             static_cast<const char*>(w.base()), K,
                             W::kBytesPerK < 4 * MR && g_gemv_prefetch, step)
                       : simd::unrolled_steps<U>(K, step);
  for (; k < K; ++k) step(0, k);
  __m256 s0[NRT], s1[NRT];
#pragma GCC unroll 6
  for (int j = 0; j < NRT; ++j) {
    s0[j] = acc[0][j][0];
    s1[j] = acc[0][j][1];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      s0[j] = _mm256_add_ps(s0[j], acc[u][j][0]);
      s1[j] = _mm256_add_ps(s1[j], acc[u][j][1]);
    }
  }
  // s0 / s1: rows 0..7 / 8..15, or with kEo the even / odd rows.
  if constexpr (W::kEo) {
    store_cols8(s0, 0, 2, m, alpha, beta, c, ldc);
    if (m > 1) store_cols8(s1, 1, 2, m, alpha, beta, c, ldc);
  } else {
    store_cols8(s0, 0, 1, m, alpha, beta, c, ldc);
    if (m > 8) store_cols8(s1, 8, 1, m, alpha, beta, c, ldc);
  }
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

template <bool Scaled>
void dispatch_d8(Format f, const void* a, int64_t K, const float* b, float* c, int64_t ldc, int m,
                 int n, float alpha, float beta) {
  const Deft8Widen d = deft8_widen(f);
  const WDeft8<Scaled> w{static_cast<const int8_t*>(a), _mm256_set1_epi32(d.shift),
                         _mm256_set1_epi32(static_cast<int>(d.mask)), _mm256_set1_ps(d.scale)};
  dispatch_n(w, K, b, c, ldc, m, n, alpha, beta);
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
    default:
      dispatch_d8<false>(f, a, K, bf, c, ldc, m, n, alpha, beta);
      return;
  }
}

void fission_tile_d8s__avx2(Format f, int64_t K, const void* a, const void* b, float* c,
                            int64_t ldc, int m, int n, float alpha, float beta) {
  const float* bf = static_cast<const float*>(b);
  const int8_t* a8 = static_cast<const int8_t*>(a);
  switch (static_cast<int>(f) - static_cast<int>(Format::deft8_e1) + 1) {
#define DEFTNN_D8_CASE(N) \
  case N: dispatch_n(WDeft8S<N>{a8}, K, bf, c, ldc, m, n, alpha, beta); return;
    DEFTNN_D8_CASE(1) DEFTNN_D8_CASE(2) DEFTNN_D8_CASE(3) DEFTNN_D8_CASE(4)
    DEFTNN_D8_CASE(5) DEFTNN_D8_CASE(6) DEFTNN_D8_CASE(7)
#undef DEFTNN_D8_CASE
    default: dispatch_d8<true>(f, a, K, bf, c, ldc, m, n, alpha, beta); return;
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

namespace deftnn::gemm {
double peak_fma__avx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-7f);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], x, y);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  alignas(32) float v[8];
  _mm256_store_ps(v, s);
  double r = 0;
  for (float f : v) r += f;
  return r;
}
}  // namespace deftnn::gemm
