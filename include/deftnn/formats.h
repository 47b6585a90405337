// deftnn: the number formats of near-compute data fission (paper §4.2, Fig. 7 and Fig. 8).
//
// One place for every bit layout. Each format is a plain code (uint8_t / uint16_t / uint32_t)
// with a scalar encoder (fp32 -> code, rounding chosen per call) and decoder (code -> fp32), a
// row in a ggml-style table (format_info), and bulk encode/decode with SIMD fast paths picked at
// run time from the CPU (active_isa(), capped by DEFTNN_ISA). The scalar functions are the
// reference: every SIMD path must produce exactly the same bits (tests/test_formats.cpp).
//
// Formats
//   f32        identity (no fission), 32 bits.
//   half       IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa; subnormals, inf, NaN.
//              Widened with F16C (vcvtph2ps). Fig. 7(c).
//   deft16     Fig. 7(d): the 16 most significant bits of an fp32 (the bfloat16 layout: 1 sign,
//              8 exponent, 7 mantissa). Widened by a 16-bit left shift: exact, keeps fp32
//              subnormals, inf and NaN.
//   deft16q    Fig. 7(e) "Deft-16 quick": two Deft-16 codes in one 32-bit word,
//              word = (hi << 16) | lo. Values 2i and 2i+1 of an array are the lo and hi halves
//              of word i, so in memory (little endian) a Deft-16Q array is byte-for-byte a
//              Deft-16 array, padded to whole words (an odd count gets a zero hi half).
//              Widening: lo = word << 16 (exact); hi = the word itself, reinterpreted as fp32,
//              with NO mask: the lo code spills into hi's 16 low mantissa bits. Error bound for
//              hi (h = the exact Deft-16 value of the hi code, q = what is computed on):
//                * h finite, nonzero, normal (biased exponent E in 1..254):
//                    q = h + sign(h) * lo * 2^(E-127-23), so
//                    0 <= |q| - |h| <= (2^16 - 1) * 2^(E-150) < ulp16(h) = 2^(E-134),
//                    i.e. less than one Deft-16 ulp, relative error < 2^-7 (at most
//                    (1 - 2^-16) * 2^-7), always away from zero, never crossing a binade.
//                * h = +-0 or a subnormal (E = 0): |q| - |h| = lo * 2^-149 <= (2^16-1) * 2^-149
//                  (< 2^-133): q is an fp32 subnormal (zero only if lo == 0).
//                * h = +-inf and lo != 0: q is a NaN (!). h = NaN: q is a NaN.
//              Exact when lo == 0. decode()/deft16q_decode_pair apply this rule; format_info().to_float
//              on a single deft16q code decodes it as the exact lo half (== deft16).
//   bf16       bfloat16 as the AVX512-BF16 instructions see it: the deft16 layout, but encoding
//              follows vcvtne2ps2bf16 (round to nearest even; fp32 subnormal inputs become a
//              signed zero: DAZ; NaN -> the top 16 bits with the quiet bit 0x0040 set) and
//              decoding follows vdpbf16ps (a bf16 subnormal reads as a signed zero: DAZ).
//              bf16_from_float(x, nearest_even) reproduces the instruction bit for bit.
//              pack_bf16_pairs() lays out a K x N panel as vdpbf16ps wants it.
//   deft8_eN   Fig. 8, N = 1..7 exponent bits: 1 sign, N exponent (bias 2^(N-1) - 1),
//              M = 7 - N mantissa bits. Widening of a code with exponent field e != 0 is the
//              DFU's: fp32 exponent = e + (127 - bias), mantissa = m << (23 - M), sign copied.
//              POLICY (where Deft-8 departs from the DFU of Fig. 8): the DFU adds the bias
//              difference unconditionally, so it has no zero (0x00 would widen to 2^-bias).
//              We reserve e == 0 for zero and subnormals, like IEEE and OCP FP8:
//              value = sign * 2^(1-bias) * m / 2^M. There are NO special values: every code with
//              e == 2^N - 1 is an ordinary finite number, so max = 2^(2^N-1-bias) * (2 - 2^-M)
//              (E4: 480, E5: 114688). Encoding saturates: overflow and +-inf give +-max, and
//              NaN gives +0 (Deft-8 cannot carry a NaN; check for NaNs before encoding).
//   ocp_e4m3   OCP 8-bit float E4M3 (OFP8 spec v1.0): bias 7, subnormals, no infinities, a
//              single NaN per sign S.1111.111, max 448. Differs from deft8_e4 only in that the
//              code S.1111.111 is NaN (so max is 448, not 480). Encoding saturates (the OCP
//              "saturating" mode): overflow and +-inf give +-448; NaN gives S.1111.111.
//   ocp_e5m2   OCP E5M2: bias 15, IEEE-like (it is binary16 cut to 8 bits): subnormals,
//              exponent 11111 is inf (m == 0) or NaN (m != 0), max 57344. Differs from deft8_e5
//              in that exponent 11111 is inf/NaN (deft8_e5 reads it as finite, max 114688).
//              Overflow follows IEEE like half (see below); NaN -> quiet NaN (m |= 0b10, the
//              top payload bit kept); inf -> inf.
//
// Rounding (encode; chosen per call)
//   truncate      toward zero: drop the low bits (the paper's Deft-16). Overflow gives +-max
//                 finite (IEEE round-toward-zero), for every format; +-inf stays +-inf where the
//                 format has infinities.
//   nearest_even  IEEE round to nearest, ties to even; mantissa carry moves into the exponent.
//                 Overflow gives +-inf where the format has infinities (half, deft16, bf16,
//                 ocp_e5m2: from max + ulp/2 up), else saturates to +-max (deft8_eN, ocp_e4m3).
//   stochastic    round |x| up to the next code with probability (|x| - lo) / (hi - lo), where
//                 lo <= |x| < hi are the neighbouring codes; unbiased: E[decode(code)] = x.
//                 The draw for element i of a bulk call is stochastic_bits(seed, i) (a counter-
//                 based hash: same seed, same codes, on every ISA path and thread split).
//                 Exactly unbiased whenever at most 32 low bits are dropped: always for
//                 deft16/bf16, and for the other formats unless |x| < 2^-8 * the smallest
//                 subnormal, where the round-up probability (< 2^-8) is quantised to 2^-32.
//                 Rounding up past max finite
//                 saturates to +-max (never inf from a finite input), so it is biased down only
//                 for |x| > max.
// Zero keeps its sign in every format (except NaN -> +0 in deft8). Subnormal results are kept
// (gradual underflow) in every format except bf16 (flush to zero, like the hardware).
// NaN round trip: decoding a NaN code and re-encoding it gives the same code with the quiet bit
// set (half 0x0200, deft16/bf16 0x0040, ocp_e5m2 0x02; ocp_e4m3 has one NaN): signalling NaNs
// are quieted, payload bits kept. Decoding: half and ocp_e5m2 NaN codes widen to quiet fp32
// NaNs (as vcvtph2ps does); deft16/deft16q/bf16 widening is the bare shift, so a signalling
// NaN code widens to a signalling fp32 NaN.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "deftnn/gemm.h"

namespace deftnn {

enum class Format : uint8_t {
  f32,
  half,
  deft16,
  deft16q,
  bf16,
  deft8_e1, deft8_e2, deft8_e3, deft8_e4, deft8_e5, deft8_e6, deft8_e7,
  ocp_e4m3,
  ocp_e5m2,
};
inline constexpr int kFormatCount = 14;

enum class Rounding : uint8_t { truncate, nearest_even, stochastic };

const char* rounding_name(Rounding r);
Rounding rounding_from_name(const std::string& name);   // throws Error on an unknown name

// The Deft-8 format with `exp_bits` (1..7) exponent bits. Throws Error outside 1..7.
Format deft8_format(int exp_bits);
// Whether f is one of deft8_e1..deft8_e7.
inline bool is_deft8(Format f) {
  return static_cast<int>(f) >= static_cast<int>(Format::deft8_e1) &&
         static_cast<int>(f) <= static_cast<int>(Format::deft8_e7);
}

// A row of the format table.
struct FormatInfo {
  Format format;
  const char* name;        // "half", "deft16", "deft16q", "bf16", "deft8_e4", "ocp_e4m3", ...
  int bits_per_value;      // storage bits per value (deft16q: 16, two per 32-bit word)
  int exp_bits;            // exponent field width
  int man_bits;            // mantissa field width
  int bias;                // exponent bias
  bool has_inf;            // some code decodes to +-inf
  bool has_nan;            // some code decodes to NaN
  bool subnormals;         // exponent field 0 decodes to subnormals (false: DAZ, bf16)
  float max_finite;        // largest finite value
  float min_subnormal;     // smallest positive value (min normal when !subnormals)
  // Scalar reference on one value. `random` is only read with Rounding::stochastic.
  uint32_t (*from_float)(float x, Rounding r, uint32_t random);
  float (*to_float)(uint32_t code);
};

const FormatInfo& format_info(Format f);
std::span<const FormatInfo> all_formats();            // in enum order
const char* format_name(Format f);
Format format_from_name(const std::string& name);     // throws Error on an unknown name
// Bytes needed to store n values (deft16q rounds up to whole 32-bit words).
int64_t encoded_bytes(Format f, int64_t n);

// ---- scalar encoders / decoders (the reference) ----
uint16_t half_from_float(float x, Rounding r = Rounding::nearest_even, uint32_t random = 0);
float half_to_float(uint16_t h);
uint16_t deft16_from_float(float x, Rounding r = Rounding::truncate, uint32_t random = 0);
float deft16_to_float(uint16_t h);
// Deft-16Q: word = (hi << 16) | lo; lo widened exactly, hi with lo spilling into its mantissa.
inline uint32_t deft16q_pack(uint16_t lo, uint16_t hi) {
  return (static_cast<uint32_t>(hi) << 16) | lo;
}
void deft16q_decode_pair(uint32_t word, float* lo, float* hi);
uint16_t bf16_from_float(float x, Rounding r = Rounding::nearest_even, uint32_t random = 0);
float bf16_to_float(uint16_t h);
uint8_t deft8_from_float(int exp_bits, float x, Rounding r = Rounding::nearest_even,
                         uint32_t random = 0);
float deft8_to_float(int exp_bits, uint8_t code);
uint8_t e4m3_from_float(float x, Rounding r = Rounding::nearest_even, uint32_t random = 0);
float e4m3_to_float(uint8_t code);
uint8_t e5m2_from_float(float x, Rounding r = Rounding::nearest_even, uint32_t random = 0);
float e5m2_to_float(uint8_t code);

// The 32 random bits stochastic rounding uses for element `index` of a bulk call with `seed`
// (counter-based: no state, any order, any thread split, same answer).
uint32_t stochastic_bits(uint64_t seed, uint64_t index);

// ---- bulk API (used by GEMM packing) ----
// dst holds encoded_bytes(f, n) bytes. Stochastic rounding draws stochastic_bits(seed, i) for
// element i. Dispatches to the best SIMD path of active_isa(); exactly equal to encode_ref.
void encode(Format f, Rounding r, const float* src, void* dst, int64_t n, uint64_t seed = 0);
void decode(Format f, const void* src, float* dst, int64_t n);
// The scalar reference loops.
void encode_ref(Format f, Rounding r, const float* src, void* dst, int64_t n, uint64_t seed = 0);
void decode_ref(Format f, const void* src, float* dst, int64_t n);
// A forced path (tests, benchmarks). Throws Error if this CPU lacks `isa`. A (format, rounding)
// without a fast path on `isa` runs the best lower path that has one, down to the reference.
void encode_isa(Isa isa, Format f, Rounding r, const float* src, void* dst, int64_t n,
                uint64_t seed = 0);
void decode_isa(Isa isa, Format f, const void* src, float* dst, int64_t n);
// Whether `isa` has a SIMD fast path of its own for this (format, rounding) / format.
bool has_simd_encode(Isa isa, Format f, Rounding r);
bool has_simd_decode(Isa isa, Format f);

// ---- bf16 panel for vdpbf16ps ----
// Packs op(B) = B[K x N] (row-major, ldb >= N) into K pairs: dst[(k/2) * N * 2 + n * 2 + (k%2)]
// = bf16(B[k][n]), so each 32-bit word holds rows k and k+1 of one column, the layout
// vdpbf16ps multiplies pairwise. An odd K is padded with a zero row. dst holds
// ((K + 1) / 2) * N * 2 codes. Rounding as bf16_from_float (nearest_even == the instruction).
int64_t bf16_pairs_size(int64_t K, int64_t N);   // in uint16_t codes
void pack_bf16_pairs(const float* B, int64_t ldb, int64_t K, int64_t N, uint16_t* dst,
                     Rounding r = Rounding::nearest_even, uint64_t seed = 0);

}  // namespace deftnn
