// deftnn: the device (CUDA) twin of the bit layouts in include/deftnn/formats.h - widening in
// registers (the paper's Data Fission Unit, in software) and the run-time encoders the CUDA
// im2col uses. Every function here equals the scalar reference of formats.cpp bit for bit
// (tests/test_cuda.cpp checks each against it); the policy comments live in formats.h.
#pragma once
#include <cuda_fp16.h>
#include <cstdint>

namespace deftnn::cuda_fmt {

// ---- widening: 32-bit words of codes -> fp32 ----
// Two 16-bit codes per word: lo = the value at the even index, hi = the odd one.
struct WidenF32 {
  static constexpr int kBits = 32;
};
struct WidenHalf {
  static constexpr int kBits = 16;
  __device__ __forceinline__ static void pair(uint32_t w, float& lo, float& hi) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w));
    lo = f.x;
    hi = f.y;
  }
};
// Deft-16 (Fig. 7d): each code is the top half of an fp32. lo: shift, hi: mask.
struct WidenDeft16 {
  static constexpr int kBits = 16;
  __device__ __forceinline__ static void pair(uint32_t w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xFFFF0000u);
  }
};
// Deft-16Q (Fig. 7e): hi is the word itself - the lo code spills into its low mantissa bits, the
// AND saved (error bound in formats.h).
struct WidenDeft16Q {
  static constexpr int kBits = 16;
  __device__ __forceinline__ static void pair(uint32_t w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w);
  }
};
// Deft-8 with N exponent bits (Fig. 8): the 7 code bits placed at the low end of the fp32
// exponent field (shift 16 + N), the sign at bit 31, then one multiply by 2^(127 - bias): exact
// for every code, including zero and the subnormals (e == 0) of our policy.
struct WidenDeft8 {
  static constexpr int kBits = 8;
  int shift;     // 16 + N
  float scale;   // 2^(127 - bias)
  __device__ __forceinline__ float one(uint32_t code) const {
    return __uint_as_float(((code & 0x7Fu) << shift) | ((code & 0x80u) << 24)) * scale;
  }
  // Four codes per word, index 0 in the low byte.
  __device__ __forceinline__ void quad(uint32_t w, float v[4]) const {
    v[0] = one(w & 0xFFu);
    v[1] = one((w >> 8) & 0xFFu);
    v[2] = one((w >> 16) & 0xFFu);
    v[3] = one(w >> 24);
  }
};
inline WidenDeft8 deft8_widen(int exp_bits) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  WidenDeft8 w;
  w.shift = 16 + exp_bits;
  const uint32_t bits = static_cast<uint32_t>(254 - bias) << 23;   // 2^(127 - bias)
  __builtin_memcpy(&w.scale, &bits, 4);
  return w;
}

// ---- run-time encoders (activations) ----
__device__ __forceinline__ bool is_nan_bits(uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }

// IEEE half, nearest-even; NaN quieted with its payload kept (as formats.cpp / vcvtps2ph).
__device__ __forceinline__ uint16_t half_rne(float x) {
  const uint32_t u = __float_as_uint(x);
  if (is_nan_bits(u))
    return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7E00u | ((u & 0x7FFFFFu) >> 13));
  return __half_as_ushort(__float2half_rn(x));
}
// Deft-16: truncation (the paper) or nearest-even (overflow -> inf); NaN -> top half | quiet bit.
__device__ __forceinline__ uint16_t deft16_trunc(float x) {
  const uint32_t u = __float_as_uint(x);
  return static_cast<uint16_t>(is_nan_bits(u) ? (u >> 16) | 0x40u : u >> 16);
}
__device__ __forceinline__ uint16_t deft16_rne(float x) {
  const uint32_t u = __float_as_uint(x);
  if (is_nan_bits(u)) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace deftnn::cuda_fmt
