// Winograd F(2x2, 3x3), AVX512-BF16 (winograd.h, "bf16 variant"): the input transform writing
// K-pair bf16 words (the 16 GEMMs run sbgemm_pairs.h's tile). The transform is the fp32 one
// (winograd_in_avx512.h) on two channels at a time, rounded with vcvtne2ps2bf16; the tests check
// it against a scalar reference of the rounded arithmetic.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12: _mm512_undefined_* inside the intrinsics
#include <immintrin.h>

#include "gemm/simd_util.h"
#include "gemm/winograd.h"
#include "gemm/winograd_in_avx512.h"

namespace deftnn::gemm {

void wino_in__avx512bf16(const WinoInSeg& s) {
  // 16-bit element 2l of the interleave is bf16(channel 2kp) of lane l, 2l + 1 that of 2kp + 1:
  // from vcvtne2ps2bf16's (lo channel in elements 0..15, hi channel in 16..31).
  alignas(64) static const int16_t kInterleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                      21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26,
                                                      11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i il = _mm512_load_si512(kInterleave);
  const WinoInReader rd(s);
  const __mmask16 st = simd::tail_mask(s.len);
  const int64_t KP = (s.C + 1) / 2;
  uint32_t* w0 = reinterpret_cast<uint32_t*>(s.v) + (s.j / s.nr) * KP * s.nr + s.j % s.nr;
  __m512 hi[16];
  for (int xi = 0; xi < 16; ++xi) hi[xi] = _mm512_setzero_ps();   // an odd C's last pair
  for (int64_t kp = 0; kp < KP; ++kp) {
    __m512 lo[16];
    rd.channel(2 * kp, lo);
    if (2 * kp + 1 < s.C) rd.channel(2 * kp + 1, hi);
    else
      for (int xi = 0; xi < 16; ++xi) hi[xi] = _mm512_setzero_ps();
    uint32_t* d = w0 + kp * s.nr;
#pragma GCC unroll 16
    for (int xi = 0; xi < 16; ++xi) {
      const __m512bh pair = _mm512_cvtne2ps_pbh(hi[xi], lo[xi]);
      const __m512i words = _mm512_permutexvar_epi16(il, reinterpret_cast<const __m512i&>(pair));
      _mm512_mask_storeu_epi32(d + xi * s.xi_stride, st, words);
    }
  }
}

}  // namespace deftnn::gemm
