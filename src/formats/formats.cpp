// deftnn: number formats of near-compute data fission: the scalar reference, the format table
// and the runtime dispatch of the bulk conversions. See include/deftnn/formats.h for the
// layouts and the special-value policy; this file is the one that implements it.
#include "deftnn/formats.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "deftnn/error.h"
#include "formats/simd.h"

namespace deftnn {
namespace {

// What a binary floating-point format with sign, exponent and mantissa fields needs for a
// generic, exact encoder: everything but NaN's code is decided by these numbers.
struct Spec {
  int bits;            // total bits (the sign is the top one)
  int man;             // mantissa bits M
  int bias;            // exponent bias B
  uint32_t max_mag;    // largest finite magnitude code
  uint32_t inf_mag;    // magnitude code of inf; 0 when the format has none
  bool daz;            // fp32 subnormal inputs encode to signed zero (bf16)
};

constexpr Spec kHalf{16, 10, 15, 0x7BFF, 0x7C00, false};
constexpr Spec kDeft16{16, 7, 127, 0x7F7F, 0x7F80, false};
constexpr Spec kBf16{16, 7, 127, 0x7F7F, 0x7F80, true};
constexpr Spec kE4M3{8, 3, 7, 0x7E, 0, false};
constexpr Spec kE5M2{8, 2, 15, 0x7B, 0x7C, false};
constexpr Spec deft8_spec(int n) { return Spec{8, 7 - n, (1 << (n - 1)) - 1, 0x7F, 0, false}; }

// Encodes a finite or infinite (not NaN) x. Works on the fp32 significand as an integer: the
// magnitude codes of a format are monotone and contiguous, so "round up" is "+1", and a
// mantissa carry into the exponent (or from subnormal to normal) happens by itself.
uint32_t encode_number(const Spec& s, float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 31) << (s.bits - 1);
  const uint32_t ef = (u >> 23) & 0xFF, mf = u & 0x7FFFFF;
  if (ef == 0xFF) return sign | (s.inf_mag ? s.inf_mag : s.max_mag);   // +-inf
  if (ef == 0 && (s.daz || mf == 0)) return sign;                       // zero (or DAZ)
  const int e = ef ? static_cast<int>(ef) - 127 : -126;                 // x = sig * 2^(e-23)
  const uint32_t sig = ef ? (mf | 0x800000u) : mf;
  const int et = std::max(e, 1 - s.bias);   // the target's exponent (its subnormals: 1-B)
  const int d = 23 - s.man + (et - e);      // low bits of sig dropped, >= 0
  const uint64_t retained = d < 32 ? (sig >> d) : 0;
  const uint64_t rem = d < 32 ? (sig & ((uint64_t{1} << d) - 1)) : sig;
  // The truncated magnitude code (the implicit bit of `retained` adds 1 to the exponent field).
  const uint64_t base = (static_cast<uint64_t>(et + s.bias - 1) << s.man) + retained;
  bool up = false;
  if (d > 0 && rem != 0) {
    switch (r) {
      case Rounding::truncate: break;
      case Rounding::nearest_even:
        if (d <= 32) {
          const uint64_t half = uint64_t{1} << (d - 1);
          up = rem > half || (rem == half && (base & 1));   // parity of the code (M may be 0)
        }   // d > 32: rem < 2^24 < half
        break;
      case Rounding::stochastic:
        // P(up) = rem / 2^d: the top d bits of `random` are uniform on [0, 2^d).
        if (d <= 32) up = (uint64_t{random} >> (32 - d)) < rem;
        else up = d - 32 < 64 && uint64_t{random} < (rem >> (d - 32));
        break;
    }
  }
  const uint64_t mag = base + up;
  if (mag > s.max_mag) {
    if (r == Rounding::nearest_even && s.inf_mag) return sign | s.inf_mag;
    return sign | s.max_mag;
  }
  return sign | static_cast<uint32_t>(mag);
}

// Decodes a magnitude code that is neither inf nor NaN.
float decode_number(const Spec& s, uint32_t code) {
  const uint32_t sign = (code >> (s.bits - 1)) & 1;
  const uint32_t mag = code & ((1u << (s.bits - 1)) - 1);
  const uint32_t e = mag >> s.man, m = mag & ((1u << s.man) - 1);
  if (e == 0) {   // zero / subnormal: m * 2^(1 - B - M), exact in fp32
    if (s.daz) return sign ? -0.0f : 0.0f;
    const float v = std::ldexp(static_cast<float>(m), 1 - s.bias - s.man);
    return sign ? -v : v;
  }
  // The DFU of Fig. 8: add the bias difference to the exponent, align the mantissa.
  const uint32_t bits = (sign << 31) | ((e + 127 - s.bias) << 23) | (m << (23 - s.man));
  return std::bit_cast<float>(bits);
}

inline bool is_nan_bits(uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }

// splitmix64 finaliser; used once per call to turn a seed into two hash keys.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// ---- per-format value functions (table entries) ----
uint32_t f32_enc(float x, Rounding, uint32_t) { return std::bit_cast<uint32_t>(x); }
float f32_dec(uint32_t c) { return std::bit_cast<float>(c); }
uint32_t half_enc(float x, Rounding r, uint32_t rnd) { return half_from_float(x, r, rnd); }
float half_dec(uint32_t c) { return half_to_float(static_cast<uint16_t>(c)); }
uint32_t deft16_enc(float x, Rounding r, uint32_t rnd) { return deft16_from_float(x, r, rnd); }
float deft16_dec(uint32_t c) { return deft16_to_float(static_cast<uint16_t>(c)); }
uint32_t bf16_enc(float x, Rounding r, uint32_t rnd) { return bf16_from_float(x, r, rnd); }
float bf16_dec(uint32_t c) { return bf16_to_float(static_cast<uint16_t>(c)); }
template <int N>
uint32_t deft8_enc(float x, Rounding r, uint32_t rnd) { return deft8_from_float(N, x, r, rnd); }
template <int N>
float deft8_dec(uint32_t c) { return deft8_to_float(N, static_cast<uint8_t>(c)); }
uint32_t e4m3_enc(float x, Rounding r, uint32_t rnd) { return e4m3_from_float(x, r, rnd); }
float e4m3_dec(uint32_t c) { return e4m3_to_float(static_cast<uint8_t>(c)); }
uint32_t e5m2_enc(float x, Rounding r, uint32_t rnd) { return e5m2_from_float(x, r, rnd); }
float e5m2_dec(uint32_t c) { return e5m2_to_float(static_cast<uint8_t>(c)); }

constexpr float kFltMax = std::numeric_limits<float>::max();
constexpr float kFltDenormMin = std::numeric_limits<float>::denorm_min();

// max = 2^(emax - bias) * (2 - 2^-M), min subnormal = 2^(1 - bias - M).
constexpr float deft8_max(int n) {
  const int m = 7 - n, bias = (1 << (n - 1)) - 1, emax = (1 << n) - 1;
  double v = 2.0 - 1.0 / static_cast<double>(1 << m);
  for (int i = 0; i < emax - bias; ++i) v *= 2.0;
  return static_cast<float>(v);
}
constexpr float deft8_min(int n) {
  const int m = 7 - n, bias = (1 << (n - 1)) - 1;
  double v = 1.0;
  for (int i = 0; i < bias + m - 1; ++i) v *= 0.5;
  return static_cast<float>(v);
}

#define DEFT8_ROW(N)                                                                       \
  FormatInfo {                                                                             \
    Format::deft8_e##N, "deft8_e" #N, 8, N, 7 - N, (1 << (N - 1)) - 1, false, false, true, \
        deft8_max(N), deft8_min(N), deft8_enc<N>, deft8_dec<N>                             \
  }

const FormatInfo kTable[kFormatCount] = {
    {Format::f32, "f32", 32, 8, 23, 127, true, true, true, kFltMax, kFltDenormMin, f32_enc, f32_dec},
    {Format::half, "half", 16, 5, 10, 15, true, true, true, 65504.0f, 5.9604644775390625e-8f,
     half_enc, half_dec},
    {Format::deft16, "deft16", 16, 8, 7, 127, true, true, true, 3.3895313892515355e38f,
     9.18354961579912115e-41f, deft16_enc, deft16_dec},
    {Format::deft16q, "deft16q", 16, 8, 7, 127, true, true, true, 3.3895313892515355e38f,
     9.18354961579912115e-41f, deft16_enc, deft16_dec},
    {Format::bf16, "bf16", 16, 8, 7, 127, true, true, false, 3.3895313892515355e38f,
     1.17549435082228751e-38f, bf16_enc, bf16_dec},
    DEFT8_ROW(1), DEFT8_ROW(2), DEFT8_ROW(3), DEFT8_ROW(4), DEFT8_ROW(5), DEFT8_ROW(6),
    DEFT8_ROW(7),
    {Format::ocp_e4m3, "ocp_e4m3", 8, 4, 3, 7, false, true, true, 448.0f, 0.001953125f, e4m3_enc,
     e4m3_dec},
    {Format::ocp_e5m2, "ocp_e5m2", 8, 5, 2, 15, true, true, true, 57344.0f,
     1.52587890625e-5f, e5m2_enc, e5m2_dec},
};
#undef DEFT8_ROW

int format_index(Format f) {
  const int i = static_cast<int>(f);
  check(i >= 0 && i < kFormatCount, "deftnn::formats: unknown format id " + std::to_string(i));
  return i;
}

// ---- scalar bulk loops ----
template <typename Code>
void encode_loop(const FormatInfo& fi, Rounding r, const float* src, Code* dst, int64_t n,
                 uint64_t seed) {
  if (r == Rounding::stochastic) {
    for (int64_t i = 0; i < n; ++i)
      dst[i] = static_cast<Code>(fi.from_float(src[i], r, stochastic_bits(seed, i)));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Code>(fi.from_float(src[i], r, 0));
  }
}
template <typename Code>
void decode_loop(const FormatInfo& fi, const Code* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fi.to_float(src[i]);
}

bool cpu_has_f16c() { return __builtin_cpu_supports("f16c"); }

// Throws unless this CPU can run `isa`'s conversions.
void check_isa(Isa isa) {
  const Isa det = detected_isa();
  check(static_cast<int>(isa) <= static_cast<int>(det),
        std::string("deftnn::formats: ISA ") + isa_name(isa) + " is not supported by this CPU (" +
            isa_name(det) + ")");
  check(isa == Isa::portable || cpu_has_f16c(),
        std::string("deftnn::formats: ISA ") + isa_name(isa) + " needs F16C, which this CPU lacks");
}

void check_args(const void* src, const void* dst, int64_t n) {
  check(n >= 0, "deftnn::formats: negative count " + std::to_string(n));
  check(n == 0 || (src && dst), "deftnn::formats: null buffer");
}

bool try_encode(Isa isa, Format f, Rounding r, const float* src, void* dst, int64_t n) {
  switch (isa) {
    case Isa::avx512_bf16: return formats_simd::encode_avx512bf16(f, r, src, dst, n);
    case Isa::avx512: return formats_simd::encode_avx512(f, r, src, dst, n);
    case Isa::avx2: return formats_simd::encode_avx2(f, r, src, dst, n);
    case Isa::portable: return false;
  }
  return false;
}
bool try_decode(Isa isa, Format f, const void* src, float* dst, int64_t n) {
  switch (isa) {
    case Isa::avx512_bf16:   // no bf16-specific widening: vdpbf16ps reads bf16 itself
    case Isa::avx512: return formats_simd::decode_avx512(f, src, dst, n);
    case Isa::avx2: return formats_simd::decode_avx2(f, src, dst, n);
    case Isa::portable: return false;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
const char* rounding_name(Rounding r) {
  switch (r) {
    case Rounding::truncate: return "truncate";
    case Rounding::nearest_even: return "nearest_even";
    case Rounding::stochastic: return "stochastic";
  }
  return "?";
}

Rounding rounding_from_name(const std::string& name) {
  for (Rounding r : {Rounding::truncate, Rounding::nearest_even, Rounding::stochastic})
    if (name == rounding_name(r)) return r;
  throw Error("deftnn::formats: unknown rounding '" + name +
              "' (expected truncate, nearest_even or stochastic)");
}

Format deft8_format(int exp_bits) {
  check(exp_bits >= 1 && exp_bits <= 7,
        "deftnn::formats: Deft-8 exponent bits must be 1..7, got " + std::to_string(exp_bits));
  return static_cast<Format>(static_cast<int>(Format::deft8_e1) + exp_bits - 1);
}

const FormatInfo& format_info(Format f) { return kTable[format_index(f)]; }
std::span<const FormatInfo> all_formats() { return {kTable, kFormatCount}; }
const char* format_name(Format f) { return format_info(f).name; }

Format format_from_name(const std::string& name) {
  for (const auto& fi : kTable)
    if (name == fi.name) return fi.format;
  std::string known;
  for (const auto& fi : kTable) known += std::string(known.empty() ? "" : ", ") + fi.name;
  throw Error("deftnn::formats: unknown format '" + name + "' (known: " + known + ")");
}

int64_t encoded_bytes(Format f, int64_t n) {
  if (f == Format::deft16q) return ((n + 1) / 2) * 4;
  return n * (format_info(f).bits_per_value / 8);
}

// ---- scalar reference ----
uint16_t half_from_float(float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (is_nan_bits(u))   // quiet, payload kept (what F16C's vcvtps2ph does)
    return static_cast<uint16_t>(((u >> 16) & 0x8000) | 0x7E00 | ((u & 0x7FFFFF) >> 13));
  return static_cast<uint16_t>(encode_number(kHalf, x, r, random));
}

float half_to_float(uint16_t h) {
  if ((h & 0x7C00) == 0x7C00) {   // inf, or NaN: quieted, as vcvtph2ps does
    const uint32_t m = (uint32_t{h} & 0x3FF) << 13;
    return std::bit_cast<float>((uint32_t{h} & 0x8000) << 16 | 0x7F800000u | m |
                                (m ? 0x400000u : 0u));
  }
  return decode_number(kHalf, h);
}

uint16_t deft16_from_float(float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (is_nan_bits(u)) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>(encode_number(kDeft16, x, r, random));
}

float deft16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

void deft16q_decode_pair(uint32_t word, float* lo, float* hi) {
  *lo = std::bit_cast<float>(word << 16);
  *hi = std::bit_cast<float>(word);   // no mask: lo spills into hi's low mantissa bits
}

uint16_t bf16_from_float(float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (is_nan_bits(u)) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>(encode_number(kBf16, x, r, random));
}

float bf16_to_float(uint16_t h) {
  if ((h & 0x7F80) == 0) return std::bit_cast<float>(uint32_t{h & 0x8000u} << 16);   // DAZ
  return std::bit_cast<float>(uint32_t{h} << 16);
}

uint8_t deft8_from_float(int exp_bits, float x, Rounding r, uint32_t random) {
  deft8_format(exp_bits);   // validates
  if (std::isnan(x)) return 0;
  return static_cast<uint8_t>(encode_number(deft8_spec(exp_bits), x, r, random));
}

float deft8_to_float(int exp_bits, uint8_t code) {
  deft8_format(exp_bits);
  return decode_number(deft8_spec(exp_bits), code);
}

uint8_t e4m3_from_float(float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (is_nan_bits(u)) return static_cast<uint8_t>(((u >> 24) & 0x80) | 0x7F);
  return static_cast<uint8_t>(encode_number(kE4M3, x, r, random));
}

float e4m3_to_float(uint8_t code) {
  if ((code & 0x7F) == 0x7F)
    return std::bit_cast<float>((uint32_t{code} & 0x80) << 24 | 0x7FC00000u);
  return decode_number(kE4M3, code);
}

uint8_t e5m2_from_float(float x, Rounding r, uint32_t random) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (is_nan_bits(u))
    return static_cast<uint8_t>(((u >> 24) & 0x80) | 0x7E | ((u >> 21) & 1));
  return static_cast<uint8_t>(encode_number(kE5M2, x, r, random));
}

float e5m2_to_float(uint8_t code) {
  if ((code & 0x7C) == 0x7C) {   // inf, or NaN: quieted like half
    const uint32_t m = (uint32_t{code} & 0x3) << 21;
    return std::bit_cast<float>((uint32_t{code} & 0x80) << 24 | 0x7F800000u | m |
                                (m ? 0x400000u : 0u));
  }
  return decode_number(kE5M2, code);
}

uint32_t stochastic_bits(uint64_t seed, uint64_t index) {
  // Two keys from the seed, then a murmur3-style 32-bit finaliser of the counter (twice, with
  // the counter's high word folded in), so that the SIMD paths can compute it with 32-bit lanes.
  const uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ull);
  uint32_t h = static_cast<uint32_t>(index) * 0x9E3779B1u + static_cast<uint32_t>(k);
  h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
  h += static_cast<uint32_t>(k >> 32) ^ static_cast<uint32_t>(index >> 32);
  h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
  return h;
}

// ---- bulk ----
void encode_ref(Format f, Rounding r, const float* src, void* dst, int64_t n, uint64_t seed) {
  check_args(src, dst, n);
  const FormatInfo& fi = format_info(f);
  switch (fi.bits_per_value) {
    case 32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case 16: {
      auto* d = static_cast<uint16_t*>(dst);
      encode_loop(fi, r, src, d, n, seed);
      if (f == Format::deft16q && (n & 1)) d[n] = 0;   // the padding hi half
      break;
    }
    case 8: encode_loop(fi, r, src, static_cast<uint8_t*>(dst), n, seed); break;
  }
}

void decode_ref(Format f, const void* src, float* dst, int64_t n) {
  check_args(src, dst, n);
  const FormatInfo& fi = format_info(f);
  if (f == Format::deft16q) {
    const auto* s = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i + 1 < n; i += 2) {
      uint32_t w;
      std::memcpy(&w, s + i, 4);
      deft16q_decode_pair(w, dst + i, dst + i + 1);
    }
    if (n & 1) dst[n - 1] = deft16_to_float(s[n - 1]);
    return;
  }
  switch (fi.bits_per_value) {
    case 32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case 16: decode_loop(fi, static_cast<const uint16_t*>(src), dst, n); break;
    case 8: decode_loop(fi, static_cast<const uint8_t*>(src), dst, n); break;
  }
}

void encode_isa(Isa isa, Format f, Rounding r, const float* src, void* dst, int64_t n,
                uint64_t seed) {
  check_isa(isa);
  check_args(src, dst, n);
  format_info(f);
  if (r != Rounding::stochastic) {   // the stochastic paths are scalar (the hash is cheap)
    for (int i = static_cast<int>(isa); i > 0; --i)
      if (try_encode(static_cast<Isa>(i), f, r, src, dst, n)) return;
  }
  encode_ref(f, r, src, dst, n, seed);
}

void decode_isa(Isa isa, Format f, const void* src, float* dst, int64_t n) {
  check_isa(isa);
  check_args(src, dst, n);
  format_info(f);
  for (int i = static_cast<int>(isa); i > 0; --i)
    if (try_decode(static_cast<Isa>(i), f, src, dst, n)) return;
  decode_ref(f, src, dst, n);
}

namespace {
Isa formats_isa() {
  static const Isa isa = cpu_has_f16c() ? detected_isa() : Isa::portable;
  // active_isa() (DEFTNN_ISA, set_active_isa) picks the path, never above what the CPU has.
  const Isa now = active_isa();
  return static_cast<int>(now) < static_cast<int>(isa) ? now : isa;
}
}  // namespace

void encode(Format f, Rounding r, const float* src, void* dst, int64_t n, uint64_t seed) {
  encode_isa(formats_isa(), f, r, src, dst, n, seed);
}

void decode(Format f, const void* src, float* dst, int64_t n) {
  decode_isa(formats_isa(), f, src, dst, n);
}

bool has_simd_encode(Isa isa, Format f, Rounding r) {
  switch (isa) {
    case Isa::avx512_bf16: return formats_simd::encode_supported_avx512bf16(f, r);
    case Isa::avx512: return formats_simd::encode_supported_avx512(f, r);
    case Isa::avx2: return formats_simd::encode_supported_avx2(f, r);
    case Isa::portable: return false;
  }
  return false;
}

bool has_simd_decode(Isa isa, Format f) {
  switch (isa) {
    case Isa::avx512_bf16:
    case Isa::avx512: return formats_simd::decode_supported_avx512(f);
    case Isa::avx2: return formats_simd::decode_supported_avx2(f);
    case Isa::portable: return false;
  }
  return false;
}

// ---- bf16 panel ----
int64_t bf16_pairs_size(int64_t K, int64_t N) { return ((K + 1) / 2) * N * 2; }

void pack_bf16_pairs(const float* B, int64_t ldb, int64_t K, int64_t N, uint16_t* dst,
                     Rounding r, uint64_t seed) {
  check(K >= 0 && N >= 0 && ldb >= N, "deftnn::pack_bf16_pairs: bad shape K=" +
                                          std::to_string(K) + " N=" + std::to_string(N) +
                                          " ldb=" + std::to_string(ldb));
  if (r == Rounding::nearest_even && formats_isa() == Isa::avx512_bf16) {
    formats_simd::pack_bf16_pairs_avx512bf16(B, ldb, K, N, dst);
    return;
  }
  for (int64_t k = 0; k < K; k += 2)
    for (int64_t n = 0; n < N; ++n)
      for (int t = 0; t < 2; ++t) {
        const int64_t kk = k + t;
        uint16_t c = 0;
        if (kk < K)
          c = bf16_from_float(B[kk * ldb + n], r,
                              r == Rounding::stochastic ? stochastic_bits(seed, kk * N + n) : 0);
        dst[(k / 2) * N * 2 + n * 2 + t] = c;
      }
}

namespace formats_simd {
bool fp8_params(Format f, Fp8Params* p) {
  const int i = static_cast<int>(f);
  if (i >= static_cast<int>(Format::deft8_e1) && i <= static_cast<int>(Format::deft8_e7)) {
    const int n = i - static_cast<int>(Format::deft8_e1) + 1;
    *p = {7 - n, (1 << (n - 1)) - 1, 0};
    return true;
  }
  if (f == Format::ocp_e4m3) { *p = {3, 7, 1}; return true; }
  if (f == Format::ocp_e5m2) { *p = {2, 15, 2}; return true; }
  return false;
}
}  // namespace formats_simd

}  // namespace deftnn
