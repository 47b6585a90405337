// deftnn: AVX2 + F16C fast paths of the bulk format conversions (see src/formats/simd.h).
// 8 values per step; the tail (< 8 values) goes through the scalar reference, so the results
// are bit-identical to encode_ref / decode_ref by construction of the vector bodies.
#include <immintrin.h>

#include <cstring>

#include "formats/simd.h"

namespace deftnn::formats_simd {
namespace {

// 8 fp32 bit patterns -> 8 Deft-16 / bf16 codes (trunc or nearest even), NaNs quieted.
inline __m128i to16(__m256i u, bool rne, bool daz) {
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000));
  __m256i v = u;
  if (daz) {   // exponent 0 -> signed zero
    const __m256i expz = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7F800000)),
                                            _mm256_setzero_si256());
    v = _mm256_blendv_epi8(v, _mm256_and_si256(u, _mm256_set1_epi32(int(0x80000000u))), expz);
  }
  if (rne) {   // + 0x7FFF + lsb: ties to even, carries into the exponent, overflow to inf
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(v, 16), _mm256_set1_epi32(1));
    v = _mm256_add_epi32(v, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
  }
  v = _mm256_srli_epi32(v, 16);
  const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  v = _mm256_blendv_epi8(v, q, nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

void encode16(Format f, Rounding r, const float* src, uint16_t* dst, int64_t n) {
  const bool rne = r == Rounding::nearest_even, daz = f == Format::bf16;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), to16(u, rne, daz));
  }
  for (; i < n; ++i)
    dst[i] = daz ? bf16_from_float(src[i], r) : deft16_from_float(src[i], r);
}

void encode_half(Rounding r, const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  if (r == Rounding::nearest_even) {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                       _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = half_from_float(src[i], r);
}

inline __m256i load8x16(const uint16_t* p) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// 8 codes of an 8-bit format (zero-extended to 32 bits) -> 8 fp32.
inline __m256 widen8(__m256i x, const Fp8Params& p) {
  const int M = p.man_bits;
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24);
  const __m256i em = _mm256_and_si256(x, _mm256_set1_epi32(0x7F));
  const __m256i emask = _mm256_set1_epi32((0x7F >> M) << M);
  const __m256i e = _mm256_and_si256(x, emask);
  const __m256i m = _mm256_and_si256(x, _mm256_set1_epi32((1 << M) - 1));
  // e != 0: the DFU. Shift into place and add the bias difference to the exponent field.
  __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(em, 23 - M),
                                    _mm256_set1_epi32((127 - p.bias) << 23));
  // e == 0: zero / subnormal, m * 2^(1 - bias - M) (exact, independent of MXCSR.DAZ).
  const __m256 scale = _mm256_castsi256_ps(_mm256_set1_epi32((127 + 1 - p.bias - M) << 23));
  const __m256i sub = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(m), scale));
  const __m256i ez = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
  __m256i v = _mm256_blendv_epi8(normal, sub, ez);
  if (p.special == 1) {   // e4m3: S.1111.111 is NaN
    const __m256i isnan = _mm256_cmpeq_epi32(em, _mm256_set1_epi32(0x7F));
    v = _mm256_blendv_epi8(v, _mm256_set1_epi32(0x7FC00000), isnan);
  } else if (p.special == 2) {   // e5m2: e == 31 is inf / quiet NaN
    const __m256i top = _mm256_cmpeq_epi32(e, emask);
    const __m256i mm = _mm256_slli_epi32(m, 23 - M);
    const __m256i q = _mm256_andnot_si256(_mm256_cmpeq_epi32(m, _mm256_setzero_si256()),
                                          _mm256_set1_epi32(0x400000));
    const __m256i s = _mm256_or_si256(_mm256_set1_epi32(0x7F800000), _mm256_or_si256(mm, q));
    v = _mm256_blendv_epi8(v, s, top);
  }
  return _mm256_castsi256_ps(_mm256_or_si256(v, sign));
}

}  // namespace

bool encode_supported_avx2(Format f, Rounding r) {
  if (r == Rounding::stochastic) return false;
  return f == Format::half || f == Format::deft16 || f == Format::deft16q || f == Format::bf16;
}

bool decode_supported_avx2(Format f) {
  Fp8Params p;
  return f == Format::half || f == Format::deft16 || f == Format::deft16q ||
         f == Format::bf16 || fp8_params(f, &p);
}

bool encode_avx2(Format f, Rounding r, const float* src, void* dst, int64_t n) {
  if (!encode_supported_avx2(f, r)) return false;
  auto* d = static_cast<uint16_t*>(dst);
  if (f == Format::half) {
    encode_half(r, src, d, n);
  } else {
    encode16(f, r, src, d, n);
    if (f == Format::deft16q && (n & 1)) d[n] = 0;
  }
  return true;
}

bool decode_avx2(Format f, const void* src, float* dst, int64_t n) {
  if (!decode_supported_avx2(f)) return false;
  int64_t i = 0;
  Fp8Params p;
  if (fp8_params(f, &p)) {
    const auto* s = static_cast<const uint8_t*>(src);
    for (; i + 8 <= n; i += 8) {
      int64_t w;
      std::memcpy(&w, s + i, 8);
      _mm256_storeu_ps(dst + i, widen8(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(w)), p));
    }
    if (i < n) decode_ref(f, s + i, dst + i, n - i);
    return true;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  switch (f) {
    case Format::half:
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
      break;
    case Format::deft16:
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(load8x16(s + i), 16));
      break;
    case Format::deft16q:
      // Fig. 7(e): even lanes (lo) = code << 16; odd lanes (hi) = the whole 32-bit word, i.e.
      // code << 16 | the previous (lo) code: no AND.
      for (; i + 8 <= n; i += 8) {
        const __m256i x = load8x16(s + i);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            _mm256_or_si256(_mm256_slli_epi32(x, 16), _mm256_slli_epi64(x, 32)));
      }
      break;
    case Format::bf16:
      for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_slli_epi32(load8x16(s + i), 16);
        const __m256i ez = _mm256_cmpeq_epi32(
            _mm256_and_si256(v, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            _mm256_blendv_epi8(v, _mm256_and_si256(v, _mm256_set1_epi32(int(0x80000000u))), ez));
      }
      break;
    default: return false;
  }
  if (i < n) decode_ref(f, s + i, dst + i, n - i);   // i is even: deft16q pairs stay aligned
  return true;
}

}  // namespace deftnn::formats_simd
