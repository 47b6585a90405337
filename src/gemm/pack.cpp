// deftnn GEMM packing (portable C++; the fixed-width inner loops auto-vectorise).
#include "gemm/pack.h"

#include "deftnn/gemm.h"

#include <xmmintrin.h>   // SSE is part of baseline x86-64

#include <algorithm>
#include <cstring>

namespace deftnn::gemm {
namespace {

// One MR x kc strip of A with rows [0, m) valid.
template <int MR>
void pack_a_strip(bool trans_a, int m, int64_t kc, const float* a, int64_t lda, float* dst) {
  if (m == MR) {
    if (trans_a) {
      // op(A)(i, k) = a[k * lda + i]: MR contiguous floats per k.
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = a + k * lda;
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i];
      }
    } else {
      // op(A)(i, k) = a[i * lda + k]: MR row streams, interleaved. Blocks of 8 k keep each
      // row's reads within one cache line.
      const float* rows[MR];
      for (int i = 0; i < MR; ++i) rows[i] = a + i * lda;
      int64_t k = 0;
      if constexpr (MR % 4 == 0) {
        // 4 x 4 SSE transposes: 4 k of 4 rows per step, MR / 4 row groups.
        for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
          for (int g = 0; g < MR; g += 4) {
            __m128 r0 = _mm_loadu_ps(rows[g] + k), r1 = _mm_loadu_ps(rows[g + 1] + k);
            __m128 r2 = _mm_loadu_ps(rows[g + 2] + k), r3 = _mm_loadu_ps(rows[g + 3] + k);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(dst + k * MR + g, r0);
            _mm_storeu_ps(dst + (k + 1) * MR + g, r1);
            _mm_storeu_ps(dst + (k + 2) * MR + g, r2);
            _mm_storeu_ps(dst + (k + 3) * MR + g, r3);
          }
        }
      }
      for (; k + 8 <= kc; k += 8) {
#pragma GCC unroll 8
        for (int kk = 0; kk < 8; ++kk)
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) dst[(k + kk) * MR + i] = rows[i][k + kk];
      }
      for (; k < kc; ++k)
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = rows[i][k];
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i)
      dst[k * MR + i] = i < m ? (trans_a ? a[k * lda + i] : a[i * lda + k]) : 0.0f;
  }
}

template <int MR>
void pack_a_t(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int m = static_cast<int>(std::min<int64_t>(MR, mc - i0));
    const float* src = trans_a ? a + i0 : a + i0 * lda;
    pack_a_strip<MR>(trans_a, m, kc, src, lda, dst + i0 * kc);
  }
}

void pack_a_generic(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, int mr,
                    float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    float* d = dst + i0 * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int i = 0; i < mr; ++i) {
        const int64_t r = i0 + i;
        d[k * mr + i] = r < mc ? (trans_a ? a[k * lda + r] : a[r * lda + k]) : 0.0f;
      }
  }
}

// One kc x NR panel of B with columns [0, n) valid.
template <int NR>
void pack_b_panel(bool trans_b, int n, int64_t kc, const float* b, int64_t ldb, float* dst) {
  if (n == NR && !trans_b) {
    for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * NR, b + k * ldb, NR * sizeof(float));
    return;
  }
  if (n == NR) {
    // op(B)(k, j) = b[j * ldb + k]: NR column streams, in blocks of 16 k.
    const float* cols[NR];
    for (int j = 0; j < NR; ++j) cols[j] = b + j * ldb;
    int64_t k = 0;
    if constexpr (NR % 4 == 0) {
      // 4 x 4 SSE transposes: 4 k of 4 columns per step.
      for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
        for (int g = 0; g < NR; g += 4) {
          __m128 r0 = _mm_loadu_ps(cols[g] + k), r1 = _mm_loadu_ps(cols[g + 1] + k);
          __m128 r2 = _mm_loadu_ps(cols[g + 2] + k), r3 = _mm_loadu_ps(cols[g + 3] + k);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          _mm_storeu_ps(dst + k * NR + g, r0);
          _mm_storeu_ps(dst + (k + 1) * NR + g, r1);
          _mm_storeu_ps(dst + (k + 2) * NR + g, r2);
          _mm_storeu_ps(dst + (k + 3) * NR + g, r3);
        }
      }
    }
    for (; k + 16 <= kc; k += 16) {
#pragma GCC unroll 4
      for (int kk = 0; kk < 16; ++kk)
#pragma GCC unroll 32
        for (int j = 0; j < NR; ++j) dst[(k + kk) * NR + j] = cols[j][k + kk];
    }
    for (; k < kc; ++k)
      for (int j = 0; j < NR; ++j) dst[k * NR + j] = cols[j][k];
    return;
  }
  if (!trans_b) {
    // Right-edge panel: n < NR columns, zero-padded.
    for (int64_t k = 0; k < kc; ++k) {
      std::memcpy(dst + k * NR, b + k * ldb, static_cast<size_t>(n) * sizeof(float));
      std::memset(dst + k * NR + n, 0, static_cast<size_t>(NR - n) * sizeof(float));
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < n ? b[j * ldb + k] : 0.0f;
}

template <int NR>
void pack_b_t(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, int64_t p0,
              int64_t p1, float* dst) {
  if (!trans_b) {
    // Row-major op(B): walk each row once across all full panels (one contiguous read of
    // (p1 - p0) * NR floats per k, which the prefetcher follows), instead of panel by panel
    // (kc strided reads per panel, a new page per row when ldb is large).
    // Groups of at most 8 panels keep the write streams few.
    const int64_t full_end = std::min(p1, nc / NR);
    for (; p0 < full_end;) {
      const int64_t pe = std::min(full_end, p0 + 8);
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = b + k * ldb;
        for (int64_t p = p0; p < pe; ++p)
          std::memcpy(dst + p * NR * kc + k * NR, src + p * NR, NR * sizeof(float));
      }
      p0 = pe;
    }
  }
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t j0 = p * NR;
    const int n = static_cast<int>(std::min<int64_t>(NR, nc - j0));
    const float* src = trans_b ? b + j0 * ldb : b + j0;
    pack_b_panel<NR>(trans_b, n, kc, src, ldb, dst + j0 * kc);
  }
}

void pack_b_generic(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, int nr,
                    int64_t p0, int64_t p1, float* dst) {
  for (int64_t p = p0; p < p1; ++p) {
    float* d = dst + p * nr * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < nr; ++j) {
        const int64_t c = p * nr + j;
        d[k * nr + j] = c < nc ? (trans_b ? b[c * ldb + k] : b[k * ldb + c]) : 0.0f;
      }
  }
}

// Index runs: [k, k + len) with kidx[k + t] == kidx[k] + t, so that a block whose retained
// rows are mostly in place (the pairwise swap of §4.1.1 moves only misplaced ones) is packed by
// the contiguous code above, run by run.
template <class Fn>
void for_each_run(int64_t kc, const int64_t* kidx, Fn&& fn) {
  for (int64_t k = 0; k < kc;) {
    int64_t e = k + 1;
    while (e < kc && kidx[e] == kidx[e - 1] + 1) ++e;
    fn(k, e - k, kidx[k]);
    k = e;
  }
}

// pack_b_idx_t32_rows__avx512 can run: an AVX-512 CPU, and its lane offsets (up to 15 * ldb
// elements, scaled by 4) within a signed 32-bit index.
bool gather_t32(int64_t ldb) {
  static const bool avx512 = detected_isa() >= Isa::avx512;
  return avx512 && ldb < (int64_t{1} << 24);
}

template <int MR>
void pack_a_idx(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda,
                const int64_t* kidx, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int m = static_cast<int>(std::min<int64_t>(MR, mc - i0));
    const float* src = trans_a ? a + i0 : a + i0 * lda;
    float* d = dst + i0 * kc;
    for_each_run(kc, kidx, [&](int64_t k, int64_t len, int64_t r) {
      pack_a_strip<MR>(trans_a, m, len, trans_a ? src + r * lda : src + r, lda, d + k * MR);
    });
  }
}

template <int NR>
void pack_b_idx(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb,
                const int64_t* kidx, int64_t p0, int64_t p1, float* dst) {
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t j0 = p * NR;
    const int n = static_cast<int>(std::min<int64_t>(NR, nc - j0));
    const float* src = trans_b ? b + j0 * ldb : b + j0;
    float* d = dst + j0 * kc;
    for_each_run(kc, kidx, [&](int64_t k, int64_t len, int64_t r) {
      // A short run of a transposed B (the fully connected layer's X^T at batch > 1: a run
      // break per discarded input) would go to the scalar tail of the transposing pack: on
      // AVX-512 its rows are gathered instead (runs under 8; longer ones, and gathering every
      // run, were slower). LeNet's ip1 at batch 32, 632 of 800 inputs, alternated: 1.16x ->
      // 1.06-1.08x the time of a dense layer of 632 inputs.
      if (NR == 32 && trans_b && len < 8 && gather_t32(ldb)) {
        pack_b_idx_t32_rows__avx512(len, n, src, ldb, kidx + k, d + k * NR);
        return;
      }
      pack_b_panel<NR>(trans_b, n, len, trans_b ? src + r : src + r * ldb, ldb, d + k * NR);
    });
  }
}

void pack_a_idx_generic(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda,
                        const int64_t* kidx, int mr, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    float* d = dst + i0 * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int i = 0; i < mr; ++i) {
        const int64_t r = i0 + i;
        d[k * mr + i] = r < mc ? (trans_a ? a[kidx[k] * lda + r] : a[r * lda + kidx[k]]) : 0.0f;
      }
  }
}

void pack_b_idx_generic(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb,
                        const int64_t* kidx, int nr, int64_t p0, int64_t p1, float* dst) {
  for (int64_t p = p0; p < p1; ++p) {
    float* d = dst + p * nr * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < nr; ++j) {
        const int64_t c = p * nr + j;
        d[k * nr + j] = c < nc ? (trans_b ? b[c * ldb + kidx[k]] : b[kidx[k] * ldb + c]) : 0.0f;
      }
  }
}

}  // namespace

void pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, int mr,
            float* dst, const int64_t* kidx) {
  if (kidx) {
    switch (mr) {
      case 6: return pack_a_idx<6>(trans_a, mc, kc, a, lda, kidx, dst);
      case 12: return pack_a_idx<12>(trans_a, mc, kc, a, lda, kidx, dst);
      default: return pack_a_idx_generic(trans_a, mc, kc, a, lda, kidx, mr, dst);
    }
  }
  switch (mr) {
    case 6: return pack_a_t<6>(trans_a, mc, kc, a, lda, dst);
    case 8: return pack_a_t<8>(trans_a, mc, kc, a, lda, dst);
    case 12: return pack_a_t<12>(trans_a, mc, kc, a, lda, dst);
    case 14: return pack_a_t<14>(trans_a, mc, kc, a, lda, dst);
    case 16: return pack_a_t<16>(trans_a, mc, kc, a, lda, dst);
    default: return pack_a_generic(trans_a, mc, kc, a, lda, mr, dst);
  }
}

void pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, int nr,
            int64_t p0, int64_t p1, float* dst, const int64_t* kidx) {
  if (kidx) {
    switch (nr) {
      case 8: return pack_b_idx<8>(trans_b, kc, nc, b, ldb, kidx, p0, p1, dst);
      case 16: return pack_b_idx<16>(trans_b, kc, nc, b, ldb, kidx, p0, p1, dst);
      case 32: return pack_b_idx<32>(trans_b, kc, nc, b, ldb, kidx, p0, p1, dst);
      default: return pack_b_idx_generic(trans_b, kc, nc, b, ldb, kidx, nr, p0, p1, dst);
    }
  }
  switch (nr) {
    case 8: return pack_b_t<8>(trans_b, kc, nc, b, ldb, p0, p1, dst);
    case 16: return pack_b_t<16>(trans_b, kc, nc, b, ldb, p0, p1, dst);
    case 32: return pack_b_t<32>(trans_b, kc, nc, b, ldb, p0, p1, dst);
    case 48: return pack_b_t<48>(trans_b, kc, nc, b, ldb, p0, p1, dst);
    default: return pack_b_generic(trans_b, kc, nc, b, ldb, nr, p0, p1, dst);
  }
}

}  // namespace deftnn::gemm
