// Fission tile kernels, AVX-512F: MR = 32 rows of A (two zmm per k) x n <= 12 broadcast columns
// of B. Each k: the strip column is loaded and widened once (the reduced format -> two fp32
// vectors), then reused by the 2 x n FMAs of the tile. Contract: src/gemm/fission.h.
// For n <= 2 (GEMV, fc at batch 1) the k loop is unrolled into independent accumulator sets so
// the FMA latency does not bound the weight stream.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12: _mm512_undefined_* inside the intrinsics
#include <immintrin.h>

#include <algorithm>

#include "gemm/fission.h"
#include "gemm/fission_store_avx512.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
thread_local SideRange t_side;
namespace {

constexpr int MR = 32;

// Widening of one strip column k into h0, h1. kEo: h0 = even rows, h1 = odd rows; else
// h0 = rows 0..15, h1 = rows 16..31.
struct WF32 {
  static constexpr bool kEo = false;
  static constexpr bool kHalfTile = true;   // a strip with m <= 16 rows runs only rows 0..15
  const float* a;
  static constexpr int kBytesPerK = MR * 4;
  const void* base() const { return a; }
  inline void load(int64_t k, __m512& h0, __m512& h1) const {
    h0 = _mm512_loadu_ps(a + k * MR);
    h1 = _mm512_loadu_ps(a + k * MR + 16);
  }
  inline void load0(int64_t k, __m512& h0) const { h0 = _mm512_loadu_ps(a + k * MR); }
};
struct WHalf {
  static constexpr bool kHalfTile = false;
  static constexpr bool kEo = false;
  const uint16_t* a;
  static constexpr int kBytesPerK = MR * 2;
  const void* base() const { return a; }
  inline void load(int64_t k, __m512& h0, __m512& h1) const {
    h0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k * MR)));
    h1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k * MR + 16)));
  }
};
template <bool Quick>
struct WDeft16 {
  static constexpr bool kHalfTile = false;
  static constexpr bool kEo = true;
  const uint16_t* a;
  static constexpr int kBytesPerK = MR * 2;
  const void* base() const { return a; }
  inline void load(int64_t k, __m512& h0, __m512& h1) const {
    const __m512i v = _mm512_loadu_si512(a + k * MR);
    h0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    if constexpr (Quick)
      h1 = _mm512_castsi512_ps(v);   // Deft-16Q: no AND
    else
      h1 = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
};
// Scaled: B is prescaled by 2^(127 - bias) (fission_tile_d8s), so no multiply here. The shift
// count is a vector (vpsllvd): the xmm-count form vpslld zmm, xmm is ~25% slower in the 12-column
// tile on Zen 5.
template <bool Scaled>
struct WDeft8 {
  static constexpr bool kHalfTile = false;
  static constexpr bool kEo = false;
  const int8_t* a;
  static constexpr int kBytesPerK = MR;
  const void* base() const { return a; }
  __m512i shift;
  __m512i mask;
  __m512 scale;
  inline __m512 widen(__m128i bytes) const {
    __m512i v = _mm512_cvtepi8_epi32(bytes);
    v = _mm512_and_si512(_mm512_sllv_epi32(v, shift), mask);
    if constexpr (Scaled) return _mm512_castsi512_ps(v);
    return _mm512_mul_ps(_mm512_castsi512_ps(v), scale);
  }
  inline void load(int64_t k, __m512& h0, __m512& h1) const {
    h0 = widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR)));
    h1 = widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k * MR + 16)));
  }
};

// Where a tile reads B: a packed panel of exactly NRT columns (b(k, j) = p[k * NRT + j]), or
// straight from fission_conv's padded, phased image (b(k, j) = p[off[k] + j]: no panel packing).
template <int NRT>
struct BPanel {
  const float* p;
  inline const float* row(int64_t k) const { return p + k * NRT; }
};
struct BImage {
  const float* p;
  const int64_t* off;
  inline const float* row(int64_t k) const { return p + off[k]; }
};
// A chunk over two output rows: columns j < L0 from p, the others from p2 (the second row's
// start minus L0), both at off[k]. L0 is a constant, so the unrolled tile picks the base per j.
template <int L0>
struct BImage2 {
  const float* p;
  const float* p2;
  const int64_t* off;
  struct Row {
    const float* r0;
    const float* r1;
    inline float operator[](int j) const { return j < L0 ? r0[j] : r1[j]; }
  };
  inline Row row(int64_t k) const {
    const int64_t o = off[k];
    return {p + o, p2 + o};
  }
};
struct PanelB {   // dispatch_n's maker of BPanel<N>
  const float* p;
  template <int N>
  BPanel<N> at() const { return {p}; }
};
struct ImageB {
  const float* p;
  const int64_t* off;
  template <int N>
  BImage at() const { return {p, off}; }
};

// FULL: both halves of the strip (rows 0..31); else rows 0..15 only (m <= 16, W::kHalfTile).
template <int NRT, bool FULL, class W, class BA>
void tile(const W& w, int64_t K, const BA& b, float* c, int64_t ldc, int m, float alpha,
          float beta, const TileRows* rows) {
  constexpr int U = NRT == 1 ? 4 : NRT == 2 ? 2 : 1;
  __m512 acc[U][NRT][2];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) acc[u][j][0] = acc[u][j][1] = _mm512_setzero_ps();
  const char* pa0 = static_cast<const char*>(w.base());
  auto step = [&](int u, int64_t kk) __attribute__((always_inline)) {
    // The strip (A) 8 KiB ahead, as in the GEMV tiles but for every format: a strip that
    // streams from DRAM on its first chunk (ResNet-18's layer4 at batch 1, 9.4 MB of weights
    // per conv) left the tile waiting; layer4 convs 0.89 -> 0.82 ms, CaffeNet conv3-5 (fp32
    // and bf16) 2-8% faster, SqueezeNet batch 16 even (2 threads, same runs).
    if (NRT > 2) simd::prefetch_ahead<W::kBytesPerK>(pa0 + kk * W::kBytesPerK);
    __m512 h0, h1;
    if constexpr (FULL)
      w.load(kk, h0, h1);
    else
      w.load0(kk, h0);
    const auto br = b.row(kk);
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) {
      const __m512 bj = _mm512_set1_ps(br[j]);
      acc[u][j][0] = _mm512_fmadd_ps(h0, bj, acc[u][j][0]);
      if constexpr (FULL) acc[u][j][1] = _mm512_fmadd_ps(h1, bj, acc[u][j][1]);
    }
  };
  // A GEMV (NRT <= 2) reads its strip as U streams (simd::split_steps), a reduced-format one
  // prefetched ahead; a wider tile may bring the thread's next strip into L2 (t_side).
  int64_t k = NRT <= 2 ? simd::split_steps<U, W::kBytesPerK>(
                             pa0, K, W::kBytesPerK < 4 * MR && g_gemv_prefetch, step)
                       : simd::side_prefetched_steps(t_side.p, t_side.e, K, step);
  for (; k < K; ++k) step(0, k);
  __m512 s0[NRT], s1[NRT];
#pragma GCC unroll 12
  for (int j = 0; j < NRT; ++j) {
    s0[j] = acc[0][j][0];
    s1[j] = FULL ? acc[0][j][1] : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      s0[j] = _mm512_add_ps(s0[j], acc[u][j][0]);
      if constexpr (FULL) s1[j] = _mm512_add_ps(s1[j], acc[u][j][1]);
    }
  }
  fission_store_tile32(s0, s1, W::kEo, m, alpha, beta, c, ldc, rows);
}

template <class W, class BM>
void dispatch_n(const W& w, int64_t K, const BM& b, float* c, int64_t ldc, int m, int n,
                float alpha, float beta, const TileRows* rows) {
  const bool full = !W::kHalfTile || m > 16;
  switch (n) {
#define DEFTNN_FIS_CASE(N)                                                        \
  case N:                                                                         \
    if (full)                                                                     \
      tile<N, true>(w, K, b.template at<N>(), c, ldc, m, alpha, beta, rows);      \
    else if constexpr (W::kHalfTile)                                              \
      tile<N, false>(w, K, b.template at<N>(), c, ldc, m, alpha, beta, rows);     \
    break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3) DEFTNN_FIS_CASE(4)
    DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6) DEFTNN_FIS_CASE(7) DEFTNN_FIS_CASE(8)
    DEFTNN_FIS_CASE(9) DEFTNN_FIS_CASE(10) DEFTNN_FIS_CASE(11) DEFTNN_FIS_CASE(12)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}

template <bool Scaled, class BM>
void dispatch_d8(Format f, const void* a, int64_t K, const BM& b, float* c, int64_t ldc, int m,
                 int n, float alpha, float beta, const TileRows* rows = nullptr) {
  const Deft8Widen d = deft8_widen(f);
  const WDeft8<Scaled> w{static_cast<const int8_t*>(a), _mm512_set1_epi32(d.shift),
                         _mm512_set1_epi32(static_cast<int>(d.mask)), _mm512_set1_ps(d.scale)};
  dispatch_n(w, K, b, c, ldc, m, n, alpha, beta, rows);
}

template <class BM>
void dispatch_format(Format f, int64_t K, const void* a, const BM& b, float* c, int64_t ldc,
                     int m, int n, float alpha, float beta, const TileRows* rows, bool scaled) {
  switch (f) {
    case Format::f32:
      dispatch_n(WF32{static_cast<const float*>(a)}, K, b, c, ldc, m, n, alpha, beta, rows);
      return;
    case Format::half:
      dispatch_n(WHalf{static_cast<const uint16_t*>(a)}, K, b, c, ldc, m, n, alpha, beta, rows);
      return;
    case Format::deft16:
    case Format::bf16:   // not native here: bf16 codes widen by shift like deft16
      dispatch_n(WDeft16<false>{static_cast<const uint16_t*>(a)}, K, b, c, ldc, m, n, alpha,
                 beta, rows);
      return;
    case Format::deft16q:
      dispatch_n(WDeft16<true>{static_cast<const uint16_t*>(a)}, K, b, c, ldc, m, n, alpha,
                 beta, rows);
      return;
    default:
      if (scaled)
        dispatch_d8<true>(f, a, K, b, c, ldc, m, n, alpha, beta, rows);
      else
        dispatch_d8<false>(f, a, K, b, c, ldc, m, n, alpha, beta, rows);
      return;
  }
}

}  // namespace

void fission_tile_rows__avx512(Format f, int64_t K, const void* a, const void* b, float* c,
                               int64_t ldc, int m, int n, float alpha, float beta,
                               const TileRows* rows) {
  dispatch_format(f, K, a, PanelB{static_cast<const float*>(b)}, c, ldc, m, n, alpha, beta, rows,
                  false);
}

void fission_tile__avx512(Format f, int64_t K, const void* a, const void* b, float* c,
                          int64_t ldc, int m, int n, float alpha, float beta) {
  fission_tile_rows__avx512(f, K, a, b, c, ldc, m, n, alpha, beta, nullptr);
}

void fission_tile_d8s__avx512(Format f, int64_t K, const void* a, const void* b, float* c,
                            int64_t ldc, int m, int n, float alpha, float beta) {
  dispatch_d8<true>(f, a, K, PanelB{static_cast<const float*>(b)}, c, ldc, m, n, alpha, beta);
}

void fission_tile_direct__avx512(Format f, int64_t K, const void* a, const float* b,
                                 const int64_t* rowoff, float* c, int64_t ldc, int m, int n,
                                 float alpha, float beta, const TileRows* rows, bool scaled) {
  dispatch_format(f, K, a, ImageB{b, rowoff}, c, ldc, m, n, alpha, beta, rows, scaled);
}

void fission_tile_direct2_f32__avx512(int64_t K, const float* a, const float* b0, const float* b1,
                                      int len0, const int64_t* rowoff, float* c, int64_t ldc,
                                      int m, float alpha, float beta, const TileRows* rows) {
  const WF32 w{a};
  switch (len0) {
#define DEFTNN_FIS_CASE(L)                                                                     \
  case L:                                                                                      \
    if (m > 16)                                                                                \
      tile<12, true>(w, K, BImage2<L>{b0, b1 - L, rowoff}, c, ldc, m, alpha, beta, rows);      \
    else                                                                                       \
      tile<12, false>(w, K, BImage2<L>{b0, b1 - L, rowoff}, c, ldc, m, alpha, beta, rows);     \
    break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3) DEFTNN_FIS_CASE(4)
    DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6) DEFTNN_FIS_CASE(7) DEFTNN_FIS_CASE(8)
    DEFTNN_FIS_CASE(9) DEFTNN_FIS_CASE(10) DEFTNN_FIS_CASE(11)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}

namespace {

// How far ahead (floats) the pixel-vector tile prefetches each B row: 2-4 chunks of 48-32
// columns (256 floats ahead was no faster).
// A 1x1 conv read in place has one stream per input channel (SqueezeNet's squeeze layers: 64
// or 128, 12 KiB apart), more than the hardware prefetchers follow: batch 16, one thread,
// squeeze 64 -> 16 at 55 x 55 3.18 -> 0.71 ms (in cache 0.041 ms either way).
constexpr int64_t kPxAhead = 128;
// The pixel-vector tile (see fission.h): MRT rows of an fp32 strip broadcast, NV vectors of 16
// consecutive B columns loaded from the image, C rows stored as they are (no transpose).
template <int MRT, int NV>
void tile_px(int64_t K, const float* a, const float* b, const int64_t* off, float* c,
             int64_t ldc, int m, int n, float alpha, float beta, const TileRows* rows, bool pf,
             const float* b1 = nullptr, int len0 = 0) {
  __m512 acc[MRT][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MRT; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) mask[v] = simd::tail_mask(n - 16 * v);
  // Two rows (b1): columns j < len0 from b, the others from b1 at j - len0; a vector whose
  // lanes straddle len0 is two masked loads (a masked-off lane is never read).
  __mmask16 m0[NV], m1[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    m0[v] = b1 ? static_cast<__mmask16>(mask[v] & simd::tail_mask(len0 - 16 * v)) : mask[v];
    m1[v] = static_cast<__mmask16>(mask[v] & ~m0[v]);
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* br = b + off[k];
    if (pf) {   // this row's columns a few chunks ahead (see fission_tile_direct_px__avx512)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)   // every line the chunk reads (NV of them)
        _mm_prefetch(reinterpret_cast<const char*>(br + kPxAhead + 16 * v), _MM_HINT_T0);
    }
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_maskz_loadu_ps(m0[v], br + 16 * v);
    if (b1) {
      const float* br1 = b1 + off[k] - len0;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        if (m1[v]) bv[v] = _mm512_mask_loadu_ps(bv[v], m1[v], br1 + 16 * v);
    }
    const float* ak = a + k * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MRT; ++i) {
      const __m512 ai = _mm512_set1_ps(ak[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < MRT; ++i) {
    if (i >= m) break;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 16 * v;
      __m512 r = alpha == 1.0f ? acc[i][v] : _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], p), r);
      if (rows) {   // the conv output pass, as fission_store_cols16 does it
        if (rows->bias) r = _mm512_add_ps(r, _mm512_set1_ps(rows->bias[i]));
        if (rows->res)
          r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask[v], rows->res + i * rows->ldr + 16 * v));
        if (rows->relu) {
          const __m512 zero = _mm512_setzero_ps();
          const __mmask16 pos = _mm512_cmp_ps_mask(r, zero, _CMP_GT_OQ);
          r = _mm512_mask_blend_ps(pos, _mm512_mul_ps(zero, r), r);
        }
      }
      _mm512_mask_storeu_ps(p, mask[v], r);
    }
  }
}

// fission_tile_direct_px__avx512 and, with b1, its two-row form.
void tile_direct_px(int64_t K, const float* a, const float* b, const int64_t* rowoff, float* c,
                    int64_t ldc, int m, int n, float alpha, float beta, const TileRows* rows,
                    const float* b1, int len0) {
  // The C lines of the next chunk (the next n columns of these rows), which the chunk-major
  // walk writes after every strip of this chunk: fetched now, the stores find them in cache
  // instead of waiting for each line from DRAM (a batch-16 layer's output does not fit L3).
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; j += 16) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + n + j), _MM_HINT_T0);
  // Rows of the strip in sub-tiles of 12, 8 or 4 (the strip's rows beyond m are zero); with 3
  // vectors of columns (n > 32) of 8 or 4 (24 accumulators).
  const int nv = n > 32 ? 3 : n > 16 ? 2 : 1;
  for (int i0 = 0; i0 < m;) {
    const int left = m - i0;
    const int mrt = left > 8 && nv < 3 ? 12 : left > 4 ? 8 : 4;
    const int mi = left < mrt ? left : mrt;
    TileRows r;
    const TileRows* rp = nullptr;
    if (rows) {
      r = *rows;
      if (r.bias) r.bias += i0;
      if (r.res) r.res += i0 * r.ldr;
      rp = &r;
    }
    float* ci = c + i0 * ldc;
    const float* ai = a + i0;
    const bool pf = i0 == 0;
#define DEFTNN_TILE_PX(R, V) \
  tile_px<R, V>(K, ai, b, rowoff, ci, ldc, mi, n, alpha, beta, rp, pf, b1, len0)
    if (nv == 3) {
      if (mrt == 8) DEFTNN_TILE_PX(8, 3);
      else DEFTNN_TILE_PX(4, 3);
    } else if (nv == 2) {
      if (mrt == 12) DEFTNN_TILE_PX(12, 2);
      else if (mrt == 8) DEFTNN_TILE_PX(8, 2);
      else DEFTNN_TILE_PX(4, 2);
    } else {
      if (mrt == 12) DEFTNN_TILE_PX(12, 1);
      else if (mrt == 8) DEFTNN_TILE_PX(8, 1);
      else DEFTNN_TILE_PX(4, 1);
    }
#undef DEFTNN_TILE_PX
    i0 += mrt;
  }
}

}  // namespace

void fission_tile_direct_px__avx512(int64_t K, const float* a, const float* b,
                                    const int64_t* rowoff, float* c, int64_t ldc, int m, int n,
                                    float alpha, float beta, const TileRows* rows) {
  tile_direct_px(K, a, b, rowoff, c, ldc, m, n, alpha, beta, rows, nullptr, 0);
}

void fission_tile_direct_px2__avx512(int64_t K, const float* a, const float* b0, const float* b1,
                                     int len0, const int64_t* rowoff, float* c, int64_t ldc,
                                     int m, int n, float alpha, float beta,
                                     const TileRows* rows) {
  tile_direct_px(K, a, b0, rowoff, c, ldc, m, n, alpha, beta, rows, b1, len0);
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {

// One padded image row (fission_conv's copy, stride 1): d[m] = s[m] * scale for m0 <= m < m1,
// 0 for the other m < wp; masked loads and stores per 16 floats instead of fill + memcpy +
// fill (CaffeNet's 13-wide rows: three library calls per 15 floats).
void pad_row_f32__avx512(const float* s, float* d, int64_t m0, int64_t m1, int64_t wp,
                         float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t m = 0; m < wp; m += 16) {
    const __mmask16 st = simd::tail_mask(wp - m);
    const __mmask16 ld = simd::lanes_in(m0 - m, m1 - m);
    __m512 v = _mm512_maskz_loadu_ps(ld, s + m);
    if (scale != 1.0f) v = _mm512_mul_ps(v, vs);
    _mm512_mask_storeu_ps(d + m, st, v);
  }
}

// Pads a source row and splits it into its two column phases in one pass (fission_conv's
// stride-2 copy): the padded row is t[w] = s[w] * scale for m0 <= w < m1, 0 for the other
// w < 2 * wp; d0[m] = t[2m], d1[m] = t[2m + 1] (d1 null: phase 1 not wanted), m < wp. The scalar
// strided loop was ~30% of ResNet-18's stride-2 3x3 convs at batch 1; padding into a row first
// and reading it back stalled on the masked stores (they do not forward to loads).
void pad_deinterleave2_f32__avx512(const float* s, int64_t m0, int64_t m1, int64_t wp,
                                   float scale, float* d0, float* d1) {
  alignas(64) static const int32_t kEven[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  alignas(64) static const int32_t kOdd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  const __m512i ie = _mm512_load_si512(kEven), io = _mm512_load_si512(kOdd);
  const __m512 vs = _mm512_set1_ps(scale);
  // Lanes l of the 16 floats from w0 on that lie in [m0, m1).
  auto in = [&](int64_t w0) { return simd::lanes_in(m0 - w0, m1 - w0); };
  for (int64_t m = 0; m < wp; m += 16) {
    __m512 a = _mm512_maskz_loadu_ps(in(2 * m), s + 2 * m);
    __m512 b = _mm512_maskz_loadu_ps(in(2 * m + 16), s + 2 * m + 16);
    if (scale != 1.0f) {
      a = _mm512_mul_ps(a, vs);
      b = _mm512_mul_ps(b, vs);
    }
    const __mmask16 st = simd::tail_mask(wp - m);
    _mm512_mask_storeu_ps(d0 + m, st, _mm512_permutex2var_ps(a, ie, b));
    if (d1) _mm512_mask_storeu_ps(d1 + m, st, _mm512_permutex2var_ps(a, io, b));
  }
}

// fp32 B panel straight from the padded, phased image (contract: src/gemm/fission.h): one
// masked load per segment per row, one masked store.
void panel_f32__avx512(const float* src, const int64_t* rowoff, int64_t K, const PanelSeg* seg,
                       int nseg, int nq, void* dst) {
  float* d = static_cast<float*>(dst);
  const __mmask16 all = static_cast<__mmask16>((1u << nq) - 1);
  __mmask16 m[16];
  const float* base[16];
  for (int s = 0; s < nseg; ++s) {
    m[s] = static_cast<__mmask16>(((1u << seg[s].len) - 1) << seg[s].lane);
    base[s] = src + (seg[s].off - seg[s].lane);   // lanes below seg[s].lane are masked off
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t o = rowoff[k];
    __m512 v = _mm512_maskz_loadu_ps(m[0], base[0] + o);
    for (int s = 1; s < nseg; ++s) v = _mm512_mask_loadu_ps(v, m[s], base[s] + o);
    _mm512_mask_storeu_ps(d + k * nq, all, v);
  }
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {
double peak_fma__avx512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-7f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
}  // namespace deftnn::gemm

namespace deftnn::gemm {
double read_sum__avx512(const float* p, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
}  // namespace deftnn::gemm
