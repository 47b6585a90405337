// deftnn: AVX-512 (F/BW/VL) + F16C fast paths of the bulk format conversions (see
// src/formats/simd.h). 16 values per step; the tail is the same code under a lane mask, so it
// never touches memory past n values.
// GCC 12 reports false 'maybe-uninitialized' inside its own AVX-512 intrinsics (the
// _mm512_undefined_* they start from), so the warning is off for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "formats/simd.h"

namespace deftnn::formats_simd {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// 16 fp32 bit patterns -> 16 Deft-16 / bf16 codes (trunc or nearest even), NaNs quieted.
inline __m256i to16(__m512i u, bool rne, bool daz) {
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  __m512i v = u;
  if (daz) {
    const __mmask16 ez = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7F800000));
    v = _mm512_mask_and_epi32(v, ez, u, _mm512_set1_epi32(int(0x80000000u)));
  }
  if (rne) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
    v = _mm512_add_epi32(v, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
  }
  v = _mm512_srli_epi32(v, 16);
  v = _mm512_mask_or_epi32(v, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(v);
}

inline __m512 widen8(__m512i x, const Fp8Params& p) {
  const int M = p.man_bits;
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
  const __m512i em = _mm512_and_si512(x, _mm512_set1_epi32(0x7F));
  const __m512i emask = _mm512_set1_epi32((0x7F >> M) << M);
  const __m512i e = _mm512_and_si512(x, emask);
  const __m512i m = _mm512_and_si512(x, _mm512_set1_epi32((1 << M) - 1));
  __m512i v = _mm512_add_epi32(_mm512_slli_epi32(em, 23 - M),
                               _mm512_set1_epi32((127 - p.bias) << 23));   // the DFU
  const __m512 scale = _mm512_castsi512_ps(_mm512_set1_epi32((127 + 1 - p.bias - M) << 23));
  const __mmask16 ez = _mm512_testn_epi32_mask(x, emask);
  v = _mm512_mask_mov_epi32(v, ez, _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(m), scale)));
  if (p.special == 1) {
    const __mmask16 isnan = _mm512_cmpeq_epi32_mask(em, _mm512_set1_epi32(0x7F));
    v = _mm512_mask_mov_epi32(v, isnan, _mm512_set1_epi32(0x7FC00000));
  } else if (p.special == 2) {
    const __mmask16 top = _mm512_cmpeq_epi32_mask(e, emask);
    const __mmask16 mnz = _mm512_test_epi32_mask(m, m);
    __m512i s = _mm512_or_si512(_mm512_set1_epi32(0x7F800000), _mm512_slli_epi32(m, 23 - M));
    s = _mm512_mask_or_epi32(s, mnz, s, _mm512_set1_epi32(0x400000));
    v = _mm512_mask_mov_epi32(v, top, s);
  }
  return _mm512_castsi512_ps(_mm512_or_si512(v, sign));
}

}  // namespace

bool encode_supported_avx512(Format f, Rounding r) {
  if (r == Rounding::stochastic) return false;
  return f == Format::half || f == Format::deft16 || f == Format::deft16q || f == Format::bf16;
}

bool decode_supported_avx512(Format f) {
  Fp8Params p;
  return f == Format::half || f == Format::deft16 || f == Format::deft16q ||
         f == Format::bf16 || fp8_params(f, &p);
}

bool encode_avx512(Format f, Rounding r, const float* src, void* dst, int64_t n) {
  if (!encode_supported_avx512(f, r)) return false;
  auto* d = static_cast<uint16_t*>(dst);
  const bool rne = r == Rounding::nearest_even;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    __m256i c;
    if (f == Format::half) {
      const __m512 v = _mm512_maskz_loadu_ps(k, src + i);
      c = rne ? _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
              : _mm512_cvtps_ph(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    } else {
      c = to16(_mm512_maskz_loadu_epi32(k, src + i), rne, f == Format::bf16);
    }
    _mm256_mask_storeu_epi16(d + i, k, c);
  }
  if (f == Format::deft16q && (n & 1)) d[n] = 0;
  return true;
}

bool decode_avx512(Format f, const void* src, float* dst, int64_t n) {
  if (!decode_supported_avx512(f)) return false;
  Fp8Params p;
  if (fp8_params(f, &p)) {
    const auto* s = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail_mask(n - i);
      const __m512i x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, s + i));
      _mm512_mask_storeu_ps(dst + i, k, widen8(x, p));
    }
    return true;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m256i h = _mm256_maskz_loadu_epi16(k, s + i);
    __m512i v;
    switch (f) {
      case Format::half: v = _mm512_castps_si512(_mm512_cvtph_ps(h)); break;
      case Format::deft16: v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16); break;
      case Format::deft16q: {   // Fig. 7(e): odd lanes are the whole word (no AND)
        const __m512i x = _mm512_cvtepu16_epi32(h);
        v = _mm512_or_si512(_mm512_slli_epi32(x, 16), _mm512_slli_epi64(x, 32));
        break;
      }
      case Format::bf16: {
        v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        const __mmask16 ez = _mm512_testn_epi32_mask(v, _mm512_set1_epi32(0x7F800000));
        v = _mm512_mask_and_epi32(v, ez, v, _mm512_set1_epi32(int(0x80000000u)));
        break;
      }
      default: return false;
    }
    _mm512_mask_storeu_epi32(dst + i, k, v);
  }
  return true;
}

}  // namespace deftnn::formats_simd
