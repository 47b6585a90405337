// CSR x dense row kernel, AVX-512F (contract: spmm.h). N >= 2: for a tile of up to 128 columns
// (8 zmm accumulators), each non-zero broadcasts its value and FMAs it into one contiguous
// segment of its B row; tiles are the outer loop over the row range, so one B column strip is
// reused by every row of the range. N == 1 (SpMV): 16 non-zeros at a time, x gathered by column
// index, two accumulators per row.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"   // GCC 12, inside its own intrinsics
#include <immintrin.h>

#include <algorithm>

#include "gemm/spmm.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

using simd::hsum;
using simd::tail_mask;



// One row, V vectors of 16 columns starting at B + n0 / C + n0; the last vector masked by m.
template <int V>
inline void row_tile(const int32_t* col, const float* val, int64_t nnz, const float* B,
                     int64_t ldb, float* c, __mmask16 m) {
  __m512 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t j = 0; j < nnz; ++j) {
    const __m512 a = _mm512_set1_ps(val[j]);
    const float* b = B + static_cast<int64_t>(col[j]) * ldb;
#pragma GCC unroll 8
    for (int v = 0; v < V - 1; ++v) acc[v] = _mm512_fmadd_ps(a, _mm512_loadu_ps(b + 16 * v), acc[v]);
    acc[V - 1] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, b + 16 * (V - 1)), acc[V - 1]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < V - 1; ++v) _mm512_storeu_ps(c + 16 * v, acc[v]);
  _mm512_mask_storeu_ps(c + 16 * (V - 1), m, acc[V - 1]);
}

using TileFn = void (*)(const int32_t*, const float*, int64_t, const float*, int64_t, float*,
                        __mmask16);
constexpr TileFn kTiles[9] = {nullptr,      row_tile<1>, row_tile<2>, row_tile<3>, row_tile<4>,
                              row_tile<5>, row_tile<6>, row_tile<7>, row_tile<8>};

inline float row_dot(const int32_t* col, const float* val, int64_t nnz, const float* x) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= nnz; j += 32) {
    const __m512i i0 = _mm512_loadu_si512(col + j), i1 = _mm512_loadu_si512(col + j + 16);
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(val + j), _mm512_i32gather_ps(i0, x, 4), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(val + j + 16), _mm512_i32gather_ps(i1, x, 4), s1);
  }
  for (; j < nnz; j += 16) {
    const __mmask16 m = tail_mask(nnz - j);
    const __m512i i0 = _mm512_maskz_loadu_epi32(m, col + j);
    const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, i0, x, 4);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, val + j), xv, s0);
  }
  return hsum(_mm512_add_ps(s0, s1));
}

}  // namespace

void spmm_rows_avx512(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                      int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                      int64_t ldc) {
  if (N == 1) {
    // The gather takes 32-bit element offsets; a strided x (ldb > 1, rare) goes scalar rather
    // than risk col * ldb overflowing them.
    if (ldb != 1) {
      spmm_rows_portable(row_ptr, col_idx, values, r0, r1, B, ldb, N, C, ldc);
      return;
    }
    for (int64_t i = r0; i < r1; ++i)
      C[i * ldc] = row_dot(col_idx + row_ptr[i], values + row_ptr[i], row_ptr[i + 1] - row_ptr[i],
                           B);
    return;
  }
  constexpr int64_t kTile = 128;
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    const int64_t w = std::min(kTile, N - n0);
    const int v = static_cast<int>((w + 15) / 16);
    const __mmask16 m = tail_mask(w - 16 * (v - 1));
    const TileFn fn = kTiles[v];
    for (int64_t i = r0; i < r1; ++i)
      fn(col_idx + row_ptr[i], values + row_ptr[i], row_ptr[i + 1] - row_ptr[i], B + n0, ldb,
         C + i * ldc + n0, m);
  }
}

}  // namespace deftnn::gemm
