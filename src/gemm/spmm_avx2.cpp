// CSR x dense row kernel, AVX2 + FMA (contract: spmm.h). Same shape as the AVX-512 kernel:
// N >= 2 in tiles of up to 64 columns (8 ymm accumulators, masked last vector), tiles outer
// over the row range; N == 1 (SpMV) gathers x 8 non-zeros at a time, scalar tail.
#include <immintrin.h>

#include <algorithm>

#include "gemm/spmm.h"
#include "gemm/simd_util.h"

namespace deftnn::gemm {
namespace {

using simd::hsum;

inline __m256i tail_mask(int64_t left) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(left, 8))), lane);
}


template <int V>
inline void row_tile(const int32_t* col, const float* val, int64_t nnz, const float* B,
                     int64_t ldb, float* c, __m256i m) {
  __m256 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t j = 0; j < nnz; ++j) {
    const __m256 a = _mm256_set1_ps(val[j]);
    const float* b = B + static_cast<int64_t>(col[j]) * ldb;
#pragma GCC unroll 8
    for (int v = 0; v < V - 1; ++v) acc[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 8 * v), acc[v]);
    acc[V - 1] = _mm256_fmadd_ps(a, _mm256_maskload_ps(b + 8 * (V - 1), m), acc[V - 1]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < V - 1; ++v) _mm256_storeu_ps(c + 8 * v, acc[v]);
  _mm256_maskstore_ps(c + 8 * (V - 1), m, acc[V - 1]);
}

using TileFn = void (*)(const int32_t*, const float*, int64_t, const float*, int64_t, float*,
                        __m256i);
constexpr TileFn kTiles[9] = {nullptr,      row_tile<1>, row_tile<2>, row_tile<3>, row_tile<4>,
                              row_tile<5>, row_tile<6>, row_tile<7>, row_tile<8>};

inline float row_dot(const int32_t* col, const float* val, int64_t nnz, const float* x) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= nnz; j += 16) {
    const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + j));
    const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + j + 8));
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + j), _mm256_i32gather_ps(x, i0, 4), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + j + 8), _mm256_i32gather_ps(x, i1, 4), s1);
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; j < nnz; ++j) s += val[j] * x[col[j]];
  return s;
}

}  // namespace

void spmm_rows_avx2(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                    int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                    int64_t ldc) {
  if (N == 1) {
    if (ldb != 1) {   // strided x: scalar (see spmm_avx512.cpp)
      spmm_rows_portable(row_ptr, col_idx, values, r0, r1, B, ldb, N, C, ldc);
      return;
    }
    for (int64_t i = r0; i < r1; ++i)
      C[i * ldc] = row_dot(col_idx + row_ptr[i], values + row_ptr[i], row_ptr[i + 1] - row_ptr[i], B);
    return;
  }
  constexpr int64_t kTile = 64;
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    const int64_t w = std::min(kTile, N - n0);
    const int v = static_cast<int>((w + 7) / 8);
    const __m256i m = tail_mask(w - 8 * (v - 1));
    const TileFn fn = kTiles[v];
    for (int64_t i = r0; i < r1; ++i)
      fn(col_idx + row_ptr[i], values + row_ptr[i], row_ptr[i + 1] - row_ptr[i], B + n0, ldb,
         C + i * ldc + n0, m);
  }
}

}  // namespace deftnn::gemm
