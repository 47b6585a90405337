// Fission tile kernel, AVX512-BF16: native vdpbf16ps, the hardware data fission unit. MR = 32
// rows of A as K pairs (two zmm of 16 (k, k+1) bf16 pairs per k pair), n <= 12 columns of B as
// broadcast K-pair words; fp32 accumulation. Two products per lane per instruction: twice the
// fp32 FMA's flops. Other formats go to the AVX-512 kernels. Contract: src/gemm/fission.h.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12: _mm512_undefined_* inside the intrinsics
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "deftnn/formats.h"
#include "gemm/fission.h"
#include "gemm/fission_store_avx512.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

constexpr int MR = 32;

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// Where the tile reads the K-pair words of B: a packed panel of exactly NRT columns (word (kp,
// j) at p[kp * NRT + j]) or a channel-pair image (at p[off[kp] + j], fission_conv's direct path).
template <int NRT>
struct BPanel {
  const uint32_t* p;
  inline const uint32_t* row(int64_t kp) const { return p + kp * NRT; }
};
struct BImage {
  const uint32_t* p;
  const int64_t* off;
  inline const uint32_t* row(int64_t kp) const { return p + off[kp]; }
};
// Over two output rows: columns j < L0 from p, the others from p2 (see the fp32 BImage2).
template <int L0>
struct BImage2 {
  const uint32_t* p;
  const uint32_t* p2;
  const int64_t* off;
  struct Row {
    const uint32_t* r0;
    const uint32_t* r1;
    inline uint32_t operator[](int j) const { return j < L0 ? r0[j] : r1[j]; }
  };
  inline Row row(int64_t kp) const {
    const int64_t o = off[kp];
    return {p + o, p2 + o};
  }
};

// A loaders: load(kk, a0, a1) gives k pair kk's two zmm of bf16 pairs (rows 0..15, 16..31).
struct APairs {   // a bf16 strip in K pairs
  const uint32_t* a;
  static constexpr int kBytesPerKP = MR * 4;
  const void* base() const { return a; }
  inline void load(int64_t kk, __m512bh& a0, __m512bh& a1) const {
    a0 = as_bh(_mm512_loadu_si512(a + kk * MR));
    a1 = as_bh(_mm512_loadu_si512(a + kk * MR + 16));
  }
};
// A Deft-8 strip in K pairs (FissionMode::bf16_dot; byte order d8pair_byte): per k pair one
// 64-byte load, the low and high bytes of each code's bf16 from two 128-entry tables
// (vpermi2b, AVX512_VBMI: the code's low 7 bits index, its sign bit is ignored), the sign
// ORed into the high byte, and two in-lane byte interleaves. vpermi2b is issued as inline
// assembly so that this file needs no VBMI target flag (the driver checks the CPU).
struct AD8 {
  const uint8_t* a;
  static constexpr int kBytesPerKP = MR * 2;
  const void* base() const { return a; }
  __m512i lo0, lo1, hi0, hi1;   // tables: bytes of bf16(decode(code)) for codes 0..127
  static inline __m512i lut(__m512i idx, __m512i t0, __m512i t1) {
    __asm__("vpermi2b %[t1], %[t0], %[x]" : [x] "+v"(idx) : [t0] "v"(t0), [t1] "v"(t1));
    return idx;
  }
  inline void load(int64_t kk, __m512bh& a0, __m512bh& a1) const {
    const __m512i codes = _mm512_loadu_si512(a + kk * 64);
    const __m512i lo = lut(codes, lo0, lo1);
    // hi | (codes & 0x80): ternary logic with the sign mask as the selector.
    const __m512i hi = _mm512_ternarylogic_epi32(lut(codes, hi0, hi1), codes,
                                                 _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
    a0 = as_bh(_mm512_unpacklo_epi8(lo, hi));
    a1 = as_bh(_mm512_unpackhi_epi8(lo, hi));
  }
};

template <int NRT, class BA, class AL>
void tile(int64_t K, const AL& al, const BA& b, float* c, int64_t ldc, int m,
          float alpha, float beta, const TileRows* rows) {
  constexpr int U = NRT == 1 ? 4 : NRT == 2 ? 2 : 1;
  const int64_t KP = (K + 1) / 2;
  __m512 acc[U][NRT][2];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) acc[u][j][0] = acc[u][j][1] = _mm512_setzero_ps();
  const char* pa0 = static_cast<const char*>(al.base());
  auto step = [&](int u, int64_t kk) __attribute__((always_inline)) {
    // The strip 8 KiB ahead (see the fp32 tile in fission_kernels_avx512.cpp).
    if (NRT > 2) simd::prefetch_ahead<AL::kBytesPerKP>(pa0 + kk * AL::kBytesPerKP);
    __m512bh a0, a1;
    al.load(kk, a0, a1);
    const auto br = b.row(kk);
#pragma GCC unroll 12
    for (int j = 0; j < NRT; ++j) {
      const __m512bh bj = as_bh(_mm512_set1_epi32(static_cast<int>(br[j])));
      acc[u][j][0] = _mm512_dpbf16_ps(acc[u][j][0], a0, bj);
      acc[u][j][1] = _mm512_dpbf16_ps(acc[u][j][1], a1, bj);
    }
  };
  // A GEMV (NRT <= 2) reads its strip as U prefetched streams (simd::split_steps); a wider tile
  // may bring the thread's next strip into L2 (t_side, see the fp32 tile).
  int64_t kp = NRT <= 2 ? simd::split_steps<U, AL::kBytesPerKP>(pa0, KP, g_gemv_prefetch, step)
                        : simd::side_prefetched_steps(t_side.p, t_side.e, KP, step);
  for (; kp < KP; ++kp) step(0, kp);
  __m512 s0[NRT], s1[NRT];
#pragma GCC unroll 12
  for (int j = 0; j < NRT; ++j) {
    s0[j] = acc[0][j][0];
    s1[j] = acc[0][j][1];
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u) {
      s0[j] = _mm512_add_ps(s0[j], acc[u][j][0]);
      s1[j] = _mm512_add_ps(s1[j], acc[u][j][1]);
    }
  }
  fission_store_tile32(s0, s1, false, m, alpha, beta, c, ldc, rows);
}

// The tile for n <= 12 columns, B through make.template at<N>() (a panel or the image).
template <class Make, class AL>
void dispatch_n(int64_t K, const AL& al, const Make& make, float* c, int64_t ldc, int m,
                int n, float alpha, float beta, const TileRows* rows) {
  switch (n) {
#define DEFTNN_FIS_CASE(N) \
  case N: tile<N>(K, al, make.template at<N>(), c, ldc, m, alpha, beta, rows); break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3) DEFTNN_FIS_CASE(4)
    DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6) DEFTNN_FIS_CASE(7) DEFTNN_FIS_CASE(8)
    DEFTNN_FIS_CASE(9) DEFTNN_FIS_CASE(10) DEFTNN_FIS_CASE(11) DEFTNN_FIS_CASE(12)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}
struct PanelB {   // dispatch_n's maker of BPanel<N>
  const uint32_t* p;
  template <int N>
  BPanel<N> at() const { return {p}; }
};
struct ImageB {
  const uint32_t* p;
  const int64_t* off;
  template <int N>
  BImage at() const { return {p, off}; }
};

}  // namespace

void fission_tile__avx512bf16(Format f, int64_t K, const void* a, const void* b, float* c,
                              int64_t ldc, int m, int n, float alpha, float beta) {
  fission_tile_rows__avx512bf16(f, K, a, b, c, ldc, m, n, alpha, beta, nullptr);
}

void fission_tile_rows__avx512bf16(Format f, int64_t K, const void* a, const void* b, float* c,
                                   int64_t ldc, int m, int n, float alpha, float beta,
                                   const TileRows* rows) {
  if (f != Format::bf16) {
    fission_tile_rows__avx512(f, K, a, b, c, ldc, m, n, alpha, beta, rows);
    return;
  }
  dispatch_n(K, APairs{static_cast<const uint32_t*>(a)}, PanelB{static_cast<const uint32_t*>(b)},
             c, ldc, m, n, alpha, beta, rows);
}

void fission_tile_d8dot__avx512bf16(Format f, int64_t K, const void* a, const void* b, float* c,
                                    int64_t ldc, int m, int n, float alpha, float beta,
                                    const TileRows* rows) {
  // The tables of each Deft-8 format, built once: bf16 bits of decode(code), codes 0..127
  // (exact: at most 6 mantissa bits, exponents within bf16's normal range).
  struct Tables {
    alignas(64) uint8_t lo[kFormatCount][128];
    alignas(64) uint8_t hi[kFormatCount][128];
    Tables() {
      for (int fi = 0; fi < kFormatCount; ++fi) {
        const Format g = static_cast<Format>(fi);
        for (int code = 0; code < 128; ++code) {
          uint16_t w = 0;
          if (is_deft8(g)) {
            const uint8_t c8 = static_cast<uint8_t>(code);
            float v;
            decode(g, &c8, &v, 1);
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            w = static_cast<uint16_t>(bits >> 16);
          }
          lo[fi][code] = static_cast<uint8_t>(w & 0xFF);
          hi[fi][code] = static_cast<uint8_t>(w >> 8);
        }
      }
    }
  };
  static const Tables t;
  const int fi = static_cast<int>(f);
  const AD8 al{static_cast<const uint8_t*>(a), _mm512_load_si512(t.lo[fi]),
               _mm512_load_si512(t.lo[fi] + 64), _mm512_load_si512(t.hi[fi]),
               _mm512_load_si512(t.hi[fi] + 64)};
  dispatch_n(K, al, PanelB{static_cast<const uint32_t*>(b)}, c, ldc, m, n, alpha, beta, rows);
}

void fission_tile_pairs_direct__avx512bf16(int64_t K, const void* a, const uint32_t* b,
                                           const int64_t* rowoff, float* c, int64_t ldc, int m,
                                           int n, float alpha, float beta, const TileRows* rows) {
  dispatch_n(K, APairs{static_cast<const uint32_t*>(a)}, ImageB{b, rowoff}, c, ldc, m, n, alpha,
             beta, rows);
}

void fission_tile_pairs_direct2__avx512bf16(int64_t K, const void* a, const uint32_t* b0,
                                            const uint32_t* b1, int len0, const int64_t* rowoff,
                                            float* c, int64_t ldc, int m, float alpha, float beta,
                                            const TileRows* rows) {
  const APairs a32{static_cast<const uint32_t*>(a)};
  switch (len0) {
#define DEFTNN_FIS_CASE(L) \
  case L: tile<12>(K, a32, BImage2<L>{b0, b1 - L, rowoff}, c, ldc, m, alpha, beta, rows); break;
    DEFTNN_FIS_CASE(1) DEFTNN_FIS_CASE(2) DEFTNN_FIS_CASE(3) DEFTNN_FIS_CASE(4)
    DEFTNN_FIS_CASE(5) DEFTNN_FIS_CASE(6) DEFTNN_FIS_CASE(7) DEFTNN_FIS_CASE(8)
    DEFTNN_FIS_CASE(9) DEFTNN_FIS_CASE(10) DEFTNN_FIS_CASE(11)
#undef DEFTNN_FIS_CASE
    default: break;
  }
}

// Two fp32 rows -> their K-pair words: d[m] = bf16(lo[m]) | bf16(hi[m]) << 16 for m < n,
// rounded to nearest even with DAZ like vcvtne2ps2bf16 (hi null: zeros).
void pair_words__avx512bf16(const float* lo, const float* hi, int64_t n, uint32_t* d) {
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (int64_t m = 0; m < n; m += 16) {
    const __mmask16 k = simd::tail_mask(n - m);
    const __m512 l = _mm512_maskz_loadu_ps(k, lo + m);
    const __m512 h = hi ? _mm512_maskz_loadu_ps(k, hi + m) : _mm512_setzero_ps();
    const __m512i w = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(h, l));
    _mm512_mask_storeu_epi32(d + m, k, _mm512_permutexvar_epi16(idx, w));
  }
}


void pair_words_pad__avx512bf16(const float* s0, const float* s1, int64_t m0, int64_t m1,
                                int64_t wp, float scale, uint32_t* d) {
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t m = 0; m < wp; m += 16) {
    const __mmask16 ld = simd::lanes_in(m0 - m, m1 - m);
    __m512 l = _mm512_maskz_loadu_ps(ld, s0 + m);
    __m512 h = s1 ? _mm512_maskz_loadu_ps(ld, s1 + m) : _mm512_setzero_ps();
    if (scale != 1.0f) {
      l = _mm512_mul_ps(l, vs);
      h = _mm512_mul_ps(h, vs);
    }
    const __m512i w = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(h, l));
    _mm512_mask_storeu_epi32(d + m, simd::tail_mask(wp - m), _mm512_permutexvar_epi16(idx, w));
  }
}
}  // namespace deftnn::gemm

namespace deftnn::gemm {

// Native bf16 B panel straight from the padded, phased image (contract: src/gemm/fission.h):
// rows 2kp and 2kp+1 are loaded as fp32 (one masked load per segment), rounded to bf16 by one
// vcvtne2ps2bf16 and interleaved into K-pair words by one vpermw.
void panel_pairs__avx512bf16(const float* src, const int64_t* rowoff, int64_t K,
                             const PanelSeg* seg, int nseg, int nq, void* dst) {
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  uint32_t* d = static_cast<uint32_t*>(dst);
  const __mmask16 all = static_cast<__mmask16>((1u << nq) - 1);
  __mmask16 m[16];
  const float* base[16];
  for (int s = 0; s < nseg; ++s) {
    m[s] = static_cast<__mmask16>(((1u << seg[s].len) - 1) << seg[s].lane);
    base[s] = src + (seg[s].off - seg[s].lane);   // lanes below seg[s].lane are masked off
  }
  auto row = [&](int64_t k) {
    const int64_t o = rowoff[k];
    __m512 v = _mm512_maskz_loadu_ps(m[0], base[0] + o);
    for (int s = 1; s < nseg; ++s) v = _mm512_mask_loadu_ps(v, m[s], base[s] + o);
    return v;
  };
  const int64_t KP = K / 2;
  for (int64_t kp = 0; kp < KP; ++kp) {
    const __m512 r0 = row(2 * kp), r1 = row(2 * kp + 1);
    const __m512i c = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(r1, r0));
    _mm512_mask_storeu_epi32(d + kp * nq, all, _mm512_permutexvar_epi16(idx, c));
  }
  if (K & 1) {
    const __m512i c = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_setzero_ps(), row(K - 1)));
    _mm512_mask_storeu_epi32(d + KP * nq, all, _mm512_permutexvar_epi16(idx, c));
  }
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {
double peak_dpbf16__avx512bf16(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i);
  const __m512i xi = _mm512_set1_epi32(0x3F803F80), yi = _mm512_set1_epi32(0x33D633D6);
  const __m512bh x = as_bh(xi), y = as_bh(yi);
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
}  // namespace deftnn::gemm
