// deftnn: the per-ISA fast paths of the bulk format conversions (internal).
//
// Each *_avx2.cpp / *_avx512.cpp / *_avx512bf16.cpp file is compiled with its ISA's flags and
// only called by src/formats/formats.cpp after the CPU was checked. A function returns false
// (touching nothing) when it has no fast path for the (format, rounding); otherwise it converts
// all n values, tail included, bit-identically to the scalar reference.
#pragma once
#include <cstdint>

#include "deftnn/formats.h"

namespace deftnn::formats_simd {

bool encode_supported_avx2(Format f, Rounding r);
bool decode_supported_avx2(Format f);
bool encode_avx2(Format f, Rounding r, const float* src, void* dst, int64_t n);
bool decode_avx2(Format f, const void* src, float* dst, int64_t n);

bool encode_supported_avx512(Format f, Rounding r);
bool decode_supported_avx512(Format f);
bool encode_avx512(Format f, Rounding r, const float* src, void* dst, int64_t n);
bool decode_avx512(Format f, const void* src, float* dst, int64_t n);

bool encode_supported_avx512bf16(Format f, Rounding r);
bool encode_avx512bf16(Format f, Rounding r, const float* src, void* dst, int64_t n);
// vdpbf16ps panel packing with vcvtne2ps2bf16 (nearest_even only).
void pack_bf16_pairs_avx512bf16(const float* B, int64_t ldb, int64_t K, int64_t N,
                                uint16_t* dst);

// The parameters of an 8-bit format's widening (deft8_eN, ocp_e4m3, ocp_e5m2).
struct Fp8Params {
  int man_bits;        // M
  int bias;            // exponent bias
  int special;         // 0: none (deft8), 1: S.1111.111 is NaN (e4m3), 2: e == max is inf/NaN (e5m2)
};
bool fp8_params(Format f, Fp8Params* p);   // false for a format that is not 8-bit

}  // namespace deftnn::formats_simd
