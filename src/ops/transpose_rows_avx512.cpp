// fc's transposing store, AVX-512 (see transpose_rows.h): 16 x 16 blocks of Y^T loaded as rows
// (masked at the edges), transposed in registers (unpack, then 128-bit lane shuffles), the bias
// and ReLU applied to whole rows of Y, stored masked.
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_ps() they pass as a don't-care source), which -Werror would make fatal.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm/simd_util.h"
#include "ops/transpose_rows.h"

namespace deftnn::ops {
namespace {

// r[i] (row i of a 16 x 16 block) becomes column i.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

}  // namespace

void transpose_bias__avx512(const float* yt, int64_t O, int64_t N, const float* b, bool relu,
                            float* y, int64_t o0, int64_t o1) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t o = o0; o < o1; o += 16) {
    const int no = static_cast<int>(std::min<int64_t>(16, o1 - o));
    const __mmask16 ko = simd::tail_mask(no);
    const __m512 bias = b ? _mm512_maskz_loadu_ps(ko, b + o) : zero;
    for (int64_t n = 0; n < N; n += 16) {
      const int nn = static_cast<int>(std::min<int64_t>(16, N - n));
      const __mmask16 kn = simd::tail_mask(nn);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < no ? _mm512_maskz_loadu_ps(kn, yt + (o + i) * N + n) : zero;
      transpose16(r);
      for (int j = 0; j < nn; ++j) {
        __m512 v = b ? _mm512_add_ps(r[j], bias) : r[j];
        if (relu) {
          const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
          v = _mm512_mask_blend_ps(pos, _mm512_mul_ps(zero, v), v);
        }
        _mm512_mask_storeu_ps(y + (n + j) * O + o, ko, v);
      }
    }
  }
}

}  // namespace deftnn::ops
