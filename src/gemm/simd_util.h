// Small inline SIMD helpers shared by the per-ISA kernel files (gemv, spmm, formats). Each part is
// compiled only in translation units built with that ISA's flags (*_avx2.cpp, *_avx512.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace deftnn::simd {

#if defined(__AVX2__)
// Horizontal sum of the 8 lanes.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

#if defined(__AVX512F__)
// Mask of the first min(left, 16) lanes (0 when left <= 0).
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF)
         : left <= 0 ? static_cast<__mmask16>(0)
                     : static_cast<__mmask16>((1u << left) - 1u);
}

// Horizontal sum of the 16 lanes, without _mm512_reduce_add_ps (GCC 12 warns inside it under
// -Werror).
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  __m128 s = _mm512_castps512_ps128(v);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace deftnn::simd
