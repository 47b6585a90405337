// deftnn: AVX512-BF16 fast paths: bf16 encoding with vcvtne2ps2bf16 (nearest even, DAZ/FTZ
// implied, NaN quieted: exactly bf16_from_float(x, nearest_even)) and the vdpbf16ps panel.
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_* they start from), so the warning is off for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "formats/simd.h"

namespace deftnn::formats_simd {
namespace {

inline __mmask16 mask16(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (left > 0 ? left : 0)) - 1);
}
inline __mmask32 mask32(int64_t left) {
  return left >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << (left > 0 ? left : 0)) - 1);
}

}  // namespace

bool encode_supported_avx512bf16(Format f, Rounding r) {
  return f == Format::bf16 && r == Rounding::nearest_even;
}

bool encode_avx512bf16(Format f, Rounding r, const float* src, void* dst, int64_t n) {
  if (!encode_supported_avx512bf16(f, r)) return false;
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; i += 32) {
    const __m512 a = _mm512_maskz_loadu_ps(mask16(n - i), src + i);
    const __m512 b = _mm512_maskz_loadu_ps(mask16(n - i - 16), src + i + 16);
    const __m512bh c = _mm512_cvtne2ps_pbh(b, a);   // low half from a, high half from b
    _mm512_mask_storeu_epi16(d + i, mask32(n - i), reinterpret_cast<__m512i>(c));
  }
  return true;
}

void pack_bf16_pairs_avx512bf16(const float* B, int64_t ldb, int64_t K, int64_t N,
                                uint16_t* dst) {
  // Interleave bf16(row k)[j] and bf16(row k+1)[j]: the converted vector holds row k in words
  // 0..15 and row k+1 in words 16..31.
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (int64_t k = 0; k < K; k += 2) {
    const float* r0 = B + k * ldb;
    const float* r1 = k + 1 < K ? B + (k + 1) * ldb : nullptr;
    uint16_t* out = dst + (k / 2) * N * 2;
    for (int64_t j = 0; j < N; j += 16) {
      const __mmask16 m = mask16(N - j);
      const __m512 a = _mm512_maskz_loadu_ps(m, r0 + j);
      const __m512 b = r1 ? _mm512_maskz_loadu_ps(m, r1 + j) : _mm512_setzero_ps();
      const __m512i c = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
      _mm512_mask_storeu_epi16(out + j * 2, mask32(2 * (N - j)), _mm512_permutexvar_epi16(idx, c));
    }
  }
}

}  // namespace deftnn::formats_simd
