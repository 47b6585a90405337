// Tests of the near-compute data fission number formats (include/deftnn/formats.h): exhaustive
// round trips, independent formulas, the hardware conversion instructions, rounding edge cases,
// stochastic rounding statistics, and every SIMD path against the scalar reference.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/formats.h"
#include "deftnn/rng.h"

using namespace deftnn;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
float f32(uint32_t u) { return std::bit_cast<float>(u); }
uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
bool same_bits(float a, float b) { return bits(a) == bits(b); }

const Rounding kRoundings[] = {Rounding::truncate, Rounding::nearest_even, Rounding::stochastic};

bool cpu_has(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(detected_isa()); }

// Independent formula for a code of a binary format with e exponent and m mantissa bits:
// sign * 2^(e - bias) * (1 + m / 2^M), subnormal sign * 2^(1 - bias) * m / 2^M. In double.
double formula(uint32_t code, int total_bits, int M, int bias) {
  const int sign = (code >> (total_bits - 1)) & 1;
  const uint32_t mag = code & ((1u << (total_bits - 1)) - 1);
  const int e = static_cast<int>(mag >> M);
  const double m = static_cast<double>(mag & ((1u << M) - 1));
  const double v = e == 0 ? std::ldexp(m / std::ldexp(1.0, M), 1 - bias)
                          : std::ldexp(1.0 + m / std::ldexp(1.0, M), e - bias);
  return sign ? -v : v;
}

// Brute-force reference rounding of x onto the finite values of a per-value format: sort all
// non-negative finite codes by value, find the neighbours of |x|, pick by the rounding rule.
// Only for the overflow-free range |x| <= max_finite.
struct Brute {
  std::vector<std::pair<float, uint32_t>> vals;   // (value, magnitude code), ascending
  int bits;
  explicit Brute(Format f) {
    const FormatInfo& fi = format_info(f);
    bits = fi.bits_per_value;
    for (uint32_t c = 0; c < (1u << (bits - 1)); ++c) {
      const float v = fi.to_float(c);
      if (std::isfinite(v) && !(v == 0.0f && c != 0)) vals.push_back({v, c});
    }
    std::sort(vals.begin(), vals.end());
  }
  uint32_t round(float x, Rounding r) const {
    const float a = std::fabs(x);
    const uint32_t sign = std::signbit(x) ? (1u << (bits - 1)) : 0;
    auto it = std::upper_bound(vals.begin(), vals.end(), std::make_pair(a, ~0u));
    const auto lo = *(it - 1);
    if (lo.first == a || it == vals.end() || r == Rounding::truncate) return sign | lo.second;
    const auto hi = *it;
    const double dl = static_cast<double>(a) - lo.first, dh = static_cast<double>(hi.first) - a;
    if (dl < dh) return sign | lo.second;
    if (dh < dl) return sign | hi.second;
    return sign | ((lo.second & 1) ? hi.second : lo.second);
  }
};

__attribute__((target("f16c"))) float f16c_decode(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t f16c_encode_rne(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
__attribute__((target("f16c"))) uint16_t f16c_encode_rtz(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
}

// 32 floats through vcvtne2ps2bf16: out[0..15] = bf16(lo[0..15]), out[16..31] = bf16(hi[..]).
__attribute__((target("avx512f,avx512bf16"))) void hw_cvtne2ps(const float* lo, const float* hi,
                                                               uint16_t* out) {
  const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo));
  _mm512_storeu_si512(out, reinterpret_cast<__m512i>(r));
}

// Inputs that exercise every branch: signed zeros, fp32 subnormals, infinities, NaNs (quiet,
// signalling, payload only in the low bits), huge values, values around 1, plus random ones
// spread over `lo_exp`..`hi_exp` binades.
std::vector<float> edge_and_random(int n_random, int lo_exp, int hi_exp, uint64_t seed) {
  std::vector<float> v = {0.0f, -0.0f, kInf, -kInf, f32(0x7FC00000), f32(0xFFC00000),
                          f32(0x7F800001), f32(0x7FA00000), f32(0xFF80FFFF), f32(0x00000001),
                          f32(0x80000001), f32(0x007FFFFF), f32(0x00400000), f32(0x00008000),
                          f32(0x00800000), f32(0x7F7FFFFF), f32(0xFF7FFFFF), 1.0f, -1.0f,
                          1.5f, 65504.0f, 65520.0f, 65519.0f, 448.0f, 464.0f, 480.0f, 57344.0f,
                          61440.0f, 1e-8f, 3e-8f, 2.0f, 3.99f, 1e30f, -1e-30f, 0.3f};
  Rng rng(seed);
  for (int i = 0; i < n_random; ++i) {
    const int e = lo_exp + static_cast<int>(rng.below(static_cast<uint64_t>(hi_exp - lo_exp + 1)));
    const uint32_t m = static_cast<uint32_t>(rng.next()) & 0x7FFFFF;
    const uint32_t sign = (rng.next() & 1) << 31;
    v.push_back(f32(sign | (static_cast<uint32_t>(e + 127) << 23) | m));
  }
  return v;
}

std::vector<Isa> isas_on_this_cpu() {
  std::vector<Isa> out;
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16})
    if (cpu_has(i)) out.push_back(i);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
TEST(FormatsTable, NamesBitsAndLimits) {
  ASSERT_EQ(all_formats().size(), static_cast<size_t>(kFormatCount));
  for (size_t i = 0; i < all_formats().size(); ++i) {
    const FormatInfo& fi = all_formats()[i];
    EXPECT_EQ(static_cast<size_t>(fi.format), i);
    EXPECT_EQ(format_from_name(fi.name), fi.format);
    EXPECT_EQ(fi.bits_per_value, 1 + fi.exp_bits + fi.man_bits) << fi.name;
    if (fi.format == Format::f32) continue;
    // max_finite / min_subnormal are exactly what the largest / smallest codes decode to.
    const float big = fi.to_float(fi.from_float(std::numeric_limits<float>::max(), Rounding::truncate, 0));
    EXPECT_EQ(big, fi.max_finite) << fi.name;
    EXPECT_EQ(fi.to_float(fi.from_float(fi.min_subnormal, Rounding::nearest_even, 0)),
              fi.min_subnormal) << fi.name;
    EXPECT_EQ(fi.to_float(fi.from_float(fi.min_subnormal * 0.25f, Rounding::nearest_even, 0)),
              0.0f) << fi.name;
  }
  for (int n = 1; n <= 7; ++n) {
    EXPECT_EQ(format_info(deft8_format(n)).exp_bits, n);
    EXPECT_EQ(format_info(deft8_format(n)).man_bits, 7 - n);
    EXPECT_EQ(format_info(deft8_format(n)).bias, (1 << (n - 1)) - 1);
  }
  EXPECT_THROW(deft8_format(0), Error);
  EXPECT_THROW(deft8_format(8), Error);
  EXPECT_THROW(format_from_name("fp12"), Error);
  EXPECT_THROW(rounding_from_name("up"), Error);
  EXPECT_EQ(rounding_from_name("stochastic"), Rounding::stochastic);
  EXPECT_EQ(encoded_bytes(Format::half, 7), 14);
  EXPECT_EQ(encoded_bytes(Format::deft16q, 7), 16);
  EXPECT_EQ(encoded_bytes(Format::deft8_e3, 7), 7);
  EXPECT_EQ(encoded_bytes(Format::f32, 7), 28);
  EXPECT_EQ(format_info(Format::deft8_e4).max_finite, 480.0f);
  EXPECT_EQ(format_info(Format::deft8_e5).max_finite, 114688.0f);
  EXPECT_EQ(format_info(Format::ocp_e4m3).max_finite, 448.0f);
  EXPECT_EQ(format_info(Format::ocp_e5m2).max_finite, 57344.0f);
}

// Every 16-bit pattern decoded and re-encoded (every rounding: decoding is exact, so nothing
// is rounded) gives the same pattern. NaN policy: signalling NaNs come back quieted, payload
// kept. bf16 also flushes subnormals to a signed zero (DAZ, like the hardware).
TEST(FormatsHalf, ExhaustiveRoundTripAndDecodeMatchesF16CAndFormula) {
  const bool f16c = __builtin_cpu_supports("f16c");
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float v = half_to_float(h);
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
    const bool inf = (h & 0x7FFF) == 0x7C00;
    if (f16c) { ASSERT_TRUE(same_bits(v, f16c_decode(h))) << std::hex << c; }
    if (!nan && !inf) { ASSERT_EQ(static_cast<double>(v), formula(h, 16, 10, 15)) << std::hex << c; }
    if (inf) { ASSERT_EQ(v, (h & 0x8000) ? -kInf : kInf); }
    if (nan) { ASSERT_TRUE(std::isnan(v)); }
    const uint16_t want = nan ? static_cast<uint16_t>(h | 0x200) : h;
    for (Rounding r : kRoundings) ASSERT_EQ(half_from_float(v, r, 0xFFFFFFFFu), want) << c;
  }
}

TEST(FormatsHalf, EncodeMatchesF16CNearestAndTruncation) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
  for (float x : edge_and_random(20000, -30, 17, 11)) {
    ASSERT_EQ(half_from_float(x, Rounding::nearest_even), f16c_encode_rne(x)) << std::hex << bits(x);
    ASSERT_EQ(half_from_float(x, Rounding::truncate), f16c_encode_rtz(x)) << std::hex << bits(x);
  }
}

TEST(FormatsDeft16, ExhaustiveRoundTripAndTruncationIsTheTop16Bits) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float v = deft16_to_float(h);
    ASSERT_EQ(bits(v), c << 16);   // widening is the shift, exact
    const bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
    const uint16_t want = nan ? static_cast<uint16_t>(h | 0x40) : h;
    for (Rounding r : kRoundings) ASSERT_EQ(deft16_from_float(v, r, 0xFFFFFFFFu), want) << c;
  }
  // The paper's truncation: the 16 most significant bits (NaNs quieted so that a NaN whose
  // payload is only in the low bits does not turn into inf).
  for (float x : edge_and_random(20000, -140, 127, 12)) {
    const uint32_t u = bits(x);
    const uint16_t want = std::isnan(x) ? static_cast<uint16_t>((u >> 16) | 0x40)
                                        : static_cast<uint16_t>(u >> 16);
    ASSERT_EQ(deft16_from_float(x, Rounding::truncate), want) << std::hex << u;
  }
  EXPECT_EQ(deft16_from_float(f32(0x7F800001), Rounding::truncate), 0x7FC0);
  EXPECT_TRUE(std::isnan(deft16_to_float(deft16_from_float(f32(0x7F800001)))));
}

TEST(FormatsBf16, ExhaustiveRoundTripWithDaz) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float v = bf16_to_float(h);
    const bool sub = (h & 0x7F80) == 0;
    const bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
    ASSERT_EQ(bits(v), sub ? (c & 0x8000) << 16 : c << 16) << std::hex << c;
    const uint16_t want = sub ? static_cast<uint16_t>(h & 0x8000)
                              : nan ? static_cast<uint16_t>(h | 0x40) : h;
    for (Rounding r : kRoundings) ASSERT_EQ(bf16_from_float(v, r, 0xFFFFFFFFu), want) << c;
  }
}

// The scalar bf16 encoder reproduces vcvtne2ps2bf16 exactly (rounding, denormals, NaN, inf).
TEST(FormatsBf16, ScalarMatchesCvtne2psInstruction) {
  if (!cpu_has(Isa::avx512_bf16)) GTEST_SKIP() << "no avx512_bf16";
  std::vector<float> v = edge_and_random(40000, -130, 127, 13);
  // Ties and near-ties in the low 16 bits, on odd and even bf16 mantissas, plus denormals.
  Rng rng(99);
  for (uint32_t low : {0x8000u, 0x7FFFu, 0x8001u, 0xFFFFu, 0x0001u})
    for (int i = 0; i < 200; ++i) {
      const uint32_t hi = static_cast<uint32_t>(rng.next()) & 0xFFFF0000u;
      v.push_back(f32(hi | low));
      v.push_back(f32((hi & 0x807F0000u) | low));   // exponent 0: subnormal
    }
  while (v.size() % 32) v.push_back(1.0f);
  std::vector<uint16_t> hw(32);
  for (size_t i = 0; i < v.size(); i += 32) {
    hw_cvtne2ps(&v[i], &v[i + 16], hw.data());
    for (int j = 0; j < 32; ++j)
      ASSERT_EQ(bf16_from_float(v[i + j], Rounding::nearest_even), hw[j])
          << std::hex << bits(v[i + j]);
  }
}

TEST(FormatsBf16, PackPairsIsTheVdpbf16psLayout) {
  for (int64_t K : {1, 2, 7, 16, 33})
    for (int64_t N : {1, 5, 16, 37}) {
      const int64_t ldb = N + 3;
      std::vector<float> B(static_cast<size_t>(K * ldb));
      Rng rng(static_cast<uint64_t>(K * 100 + N));
      for (auto& x : B) x = static_cast<float>(rng.normal());
      std::vector<uint16_t> got(static_cast<size_t>(bf16_pairs_size(K, N)), 0xDEAD);
      pack_bf16_pairs(B.data(), ldb, K, N, got.data());   // vcvtne2ps2bf16 where available
      std::vector<uint16_t> ref(got.size(), 0xBEEF);
      pack_bf16_pairs(B.data(), ldb, K, N, ref.data(), Rounding::truncate);
      for (size_t i = 0; i < got.size(); ++i)   // nearest and truncation differ by <= 1 code
        ASSERT_LE(std::abs(int(got[i] & 0x7FFF) - int(ref[i] & 0x7FFF)), 1);
      for (int64_t k = 0; k < (K + 1) / 2 * 2; ++k)
        for (int64_t n = 0; n < N; ++n) {
          const uint16_t want = k < K ? bf16_from_float(B[k * ldb + n]) : 0;
          ASSERT_EQ(got[(k / 2) * N * 2 + n * 2 + (k % 2)], want) << K << " " << N;
        }
    }
}

// Fig. 7(e): the hi value is the word itself. Pins the documented bound exhaustively over hi.
TEST(FormatsDeft16Q, HiValueErrorBoundExhaustive) {
  for (uint32_t hi = 0; hi < 65536; ++hi)
    for (uint32_t lo : {0x0000u, 0x0001u, 0x007Fu, 0x3F80u, 0x8000u, 0xBF80u, 0xFFFFu}) {
      float flo, fhi;
      deft16q_decode_pair(deft16q_pack(static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)),
                          &flo, &fhi);
      ASSERT_TRUE(same_bits(flo, deft16_to_float(static_cast<uint16_t>(lo))));   // exact
      const float h = deft16_to_float(static_cast<uint16_t>(hi));
      const uint32_t E = (hi >> 7) & 0xFF;
      if (std::isnan(h)) { ASSERT_TRUE(std::isnan(fhi)); continue; }
      if (std::isinf(h)) { ASSERT_TRUE(lo ? std::isnan(fhi) : fhi == h); continue; }
      ASSERT_EQ(std::signbit(fhi), std::signbit(h));
      const double err = std::fabs(static_cast<double>(fhi)) - std::fabs(static_cast<double>(h));
      const int scale = E == 0 ? -149 : static_cast<int>(E) - 150;   // weight of fp32 bit 0
      ASSERT_EQ(err, std::ldexp(static_cast<double>(lo), scale)) << hi << " " << lo;
      ASSERT_LT(err, std::ldexp(1.0, (E == 0 ? 1 : static_cast<int>(E)) - 134));   // < 1 ulp16
      if (E != 0) { ASSERT_LE(err / std::fabs(h), std::ldexp(1.0 - std::ldexp(1.0, -16), -7)); }
      if (E != 0) { ASSERT_EQ((bits(fhi) >> 23) & 0xFF, E); }   // never crosses a binade
    }
}

TEST(FormatsDeft16Q, BulkLayoutIsDeft16PaddedToWords) {
  for (int64_t n : {1, 2, 7, 8}) {
    std::vector<float> x = edge_and_random(static_cast<int>(n), -5, 5, 14);
    x.resize(static_cast<size_t>(n));
    std::vector<uint8_t> q(static_cast<size_t>(encoded_bytes(Format::deft16q, n)), 0xAA);
    std::vector<uint16_t> d(static_cast<size_t>(n));
    encode_ref(Format::deft16q, Rounding::truncate, x.data(), q.data(), n);
    encode_ref(Format::deft16, Rounding::truncate, x.data(), d.data(), n);
    ASSERT_EQ(std::memcmp(q.data(), d.data(), static_cast<size_t>(n) * 2), 0);
    if (n & 1) { ASSERT_EQ(q[static_cast<size_t>(n) * 2] | q[static_cast<size_t>(n) * 2 + 1], 0); }
    std::vector<float> y(static_cast<size_t>(n));
    decode_ref(Format::deft16q, q.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t lo = d[static_cast<size_t>(i & ~1)];
      const uint32_t want = (i & 1) ? (uint32_t{d[static_cast<size_t>(i)]} << 16 | lo)
                                    : uint32_t{d[static_cast<size_t>(i)]} << 16;
      ASSERT_EQ(bits(y[static_cast<size_t>(i)]), want) << n << " " << i;
    }
  }
}

// Every code of every Deft-8 width against sign * 2^(e-bias) * (1 + m/2^M) (subnormals at
// e == 0, no special values), and every code round trips under every rounding.
TEST(FormatsDeft8, EveryCodeOfEveryWidthMatchesFormula) {
  for (int n = 1; n <= 7; ++n) {
    const int M = 7 - n, bias = (1 << (n - 1)) - 1;
    for (uint32_t c = 0; c < 256; ++c) {
      const float v = deft8_to_float(n, static_cast<uint8_t>(c));
      ASSERT_TRUE(std::isfinite(v)) << n << " " << c;
      ASSERT_EQ(static_cast<double>(v), formula(c, 8, M, bias)) << n << " " << c;
      ASSERT_EQ(std::signbit(v), c >= 128);
      for (Rounding r : kRoundings)
        ASSERT_EQ(deft8_from_float(n, v, r, 0xFFFFFFFFu), c) << n << " " << c;
      // For e != 0 the widening is the DFU's: exponent field + (127 - bias), mantissa aligned.
      const uint32_t e = (c & 0x7F) >> M, m = c & ((1u << M) - 1);
      if (e != 0) {
        ASSERT_EQ(bits(v), (c >> 7) << 31 | (e + 127 - bias) << 23 | m << (23 - M)); }
    }
    // Saturating: overflow and inf give max, NaN gives +0.
    const float mx = format_info(deft8_format(n)).max_finite;
    for (Rounding r : kRoundings) {
      EXPECT_EQ(deft8_to_float(n, deft8_from_float(n, kInf, r)), mx);
      EXPECT_EQ(deft8_to_float(n, deft8_from_float(n, -kInf, r)), -mx);
      EXPECT_EQ(deft8_to_float(n, deft8_from_float(n, mx * 4, r)), mx);
      EXPECT_EQ(deft8_from_float(n, std::nanf(""), r), 0);
    }
  }
}

// The OCP 8-bit float spec (OFP8 v1.0): special values and limits, every code vs the formula.
TEST(FormatsOcp, E4M3AndE5M2SpecialValuesPerSpec) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float a = e4m3_to_float(static_cast<uint8_t>(c));
    if ((c & 0x7F) == 0x7F) {
      ASSERT_TRUE(std::isnan(a)) << c;   // S.1111.111 only
    } else {
      ASSERT_EQ(static_cast<double>(a), formula(c, 8, 3, 7)) << c;
    }
    for (Rounding r : kRoundings) ASSERT_EQ(e4m3_from_float(a, r, ~0u), c);
    const float b = e5m2_to_float(static_cast<uint8_t>(c));
    const bool special = (c & 0x7C) == 0x7C;
    if (!special) { ASSERT_EQ(static_cast<double>(b), formula(c, 8, 2, 15)) << c; }
    if (special && (c & 3) == 0) { ASSERT_EQ(b, (c & 0x80) ? -kInf : kInf); }
    if (special && (c & 3) != 0) { ASSERT_TRUE(std::isnan(b)); }
    const uint32_t want = special && (c & 3) ? (c | 2) : c;   // NaN quieted
    for (Rounding r : kRoundings) ASSERT_EQ(e5m2_from_float(b, r, ~0u), want);
  }
  EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), 0.001953125f);     // 2^-9
  EXPECT_EQ(e4m3_to_float(0x08), 0.015625f);        // 2^-6, min normal
  EXPECT_EQ(e5m2_to_float(0x7B), 57344.0f);
  EXPECT_EQ(e5m2_to_float(0x01), 1.52587890625e-5f);   // 2^-16
  EXPECT_EQ(e5m2_to_float(0x04), 6.103515625e-5f);     // 2^-14
  // E4M3: no inf, saturating. E5M2: IEEE overflow (nearest: inf from 61440 up).
  EXPECT_EQ(e4m3_from_float(kInf), 0x7E);
  EXPECT_EQ(e4m3_from_float(-1e9f), 0xFE);
  EXPECT_EQ(e4m3_from_float(464.0f), 0x7E);
  EXPECT_EQ(e4m3_from_float(std::nanf("")), 0x7F);
  EXPECT_EQ(e5m2_from_float(kInf), 0x7C);
  EXPECT_EQ(e5m2_from_float(61439.0f), 0x7B);
  EXPECT_EQ(e5m2_from_float(61440.0f), 0x7C);
  EXPECT_EQ(e5m2_from_float(61440.0f, Rounding::truncate), 0x7B);
  EXPECT_EQ(e5m2_from_float(1e9f, Rounding::stochastic, ~0u), 0x7B);
  // Where Deft-8 differs: the top exponent is finite.
  EXPECT_EQ(deft8_to_float(4, 0x7F), 480.0f);
  EXPECT_EQ(deft8_to_float(4, 0x78), 256.0f);
  EXPECT_EQ(deft8_to_float(5, 0x7C), 65536.0f);
  // Below the smallest subnormal: ties to even go to zero.
  EXPECT_EQ(e4m3_from_float(0.0009765625f), 0x00);   // 2^-10 = half of 2^-9
  EXPECT_EQ(e4m3_from_float(0.00146484375f), 0x01);  // 0.75 * 2^-9
}

// Nearest-even and truncation against a brute-force search over each format's values.
TEST(FormatsRounding, NearestEvenAndTruncationMatchBruteForce) {
  for (const FormatInfo& fi : all_formats()) {
    if (fi.format == Format::f32 || fi.format == Format::deft16q) continue;
    const Brute brute(fi.format);
    const int lo_exp = std::max(-126, static_cast<int>(std::floor(std::log2(fi.min_subnormal))) - 2);
    const int hi_exp = std::min(127, static_cast<int>(std::floor(std::log2(fi.max_finite))));
    std::vector<float> xs = edge_and_random(fi.bits_per_value == 8 ? 4000 : 20000, lo_exp, hi_exp,
                                            static_cast<uint64_t>(fi.format) + 100);
    // Exact midpoints between neighbouring values (ties), both signs.
    for (size_t i = 0; i + 1 < brute.vals.size(); i += (fi.bits_per_value == 8 ? 1 : 37)) {
      const double mid = 0.5 * (static_cast<double>(brute.vals[i].first) + brute.vals[i + 1].first);
      if (static_cast<double>(static_cast<float>(mid)) != mid) continue;
      xs.push_back(static_cast<float>(mid));
      xs.push_back(-static_cast<float>(mid));
    }
    for (float x : xs) {
      if (!std::isfinite(x) || std::fabs(x) > fi.max_finite) continue;
      if (fi.format == Format::bf16 && std::fabs(x) < 1.17549435e-38f) continue;   // DAZ
      for (Rounding r : {Rounding::truncate, Rounding::nearest_even})
        ASSERT_EQ(fi.from_float(x, r, 0), brute.round(x, r))
            << fi.name << " " << rounding_name(r) << " x=" << x << " bits=" << std::hex << bits(x);
    }
  }
  // A few named edge cases (half): ties to even, carry into the exponent, overflow.
  EXPECT_EQ(half_from_float(1.0f + 0x1p-11f), 0x3C00);            // tie -> even (down)
  EXPECT_EQ(half_from_float(1.0f + 3 * 0x1p-11f), 0x3C02);        // tie -> even (up)
  EXPECT_EQ(half_from_float(2047.99f), 0x6800);                    // carry: 2048
  EXPECT_EQ(half_from_float(65519.0f), 0x7BFF);
  EXPECT_EQ(half_from_float(65520.0f), 0x7C00);                    // overflow -> inf
  EXPECT_EQ(half_from_float(1e6f, Rounding::truncate), 0x7BFF);   // RTZ -> max
  EXPECT_EQ(half_from_float(1e6f, Rounding::stochastic, ~0u), 0x7BFF);
  EXPECT_EQ(half_from_float(0x1p-25f), 0x0000);                    // tie below min subnormal
  EXPECT_EQ(half_from_float(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(half_from_float(0x1p-14f - 0x1p-26f), 0x0400);         // subnormal -> normal carry
  EXPECT_EQ(deft16_from_float(f32(0x3F808000), Rounding::nearest_even), 0x3F80);   // tie even
  EXPECT_EQ(deft16_from_float(f32(0x3F818000), Rounding::nearest_even), 0x3F82);
  EXPECT_EQ(deft16_from_float(f32(0x7F7FFFFF), Rounding::nearest_even), 0x7F80);   // -> inf
  EXPECT_EQ(deft16_from_float(f32(0x7F7FFFFF), Rounding::truncate), 0x7F7F);
  EXPECT_EQ(deft16_from_float(f32(0x7F7FFFFF), Rounding::stochastic, ~0u), 0x7F7F);
  EXPECT_EQ(deft8_from_float(4, 1e9f, Rounding::nearest_even), 0x7F);
  EXPECT_EQ(deft8_from_float(4, -0.0f), 0x80);
}

// Stochastic rounding: only the two neighbours come out, the mean of many draws is x within
// 5 standard errors (each draw is lo + ulp * Bernoulli(p), so sd = ulp * sqrt(p (1 - p) / n)),
// and the codes are a function of (seed, index) only.
TEST(FormatsRounding, StochasticIsUnbiasedAndReproducible) {
  const int64_t n = 1 << 16;
  struct Case { Format f; float x; };
  const Case cases[] = {{Format::deft16, 1.3f},        {Format::deft16, -0.001234f},
                        {Format::bf16, 3.14159f},      {Format::half, 0.1f},
                        {Format::half, 1e-6f},         {Format::deft8_e4, 0.3f},
                        {Format::deft8_e1, 0.3f},      {Format::deft8_e7, 5.0f},
                        {Format::ocp_e4m3, -100.0f},   {Format::ocp_e5m2, 1000.0f},
                        {Format::deft8_e3, 0.0003f}};
  for (const Case& c : cases) {
    const FormatInfo& fi = format_info(c.f);
    std::vector<float> x(static_cast<size_t>(n), c.x), y(static_cast<size_t>(n));
    std::vector<uint8_t> a(static_cast<size_t>(encoded_bytes(c.f, n))), b(a.size());
    encode(c.f, Rounding::stochastic, x.data(), a.data(), n, 42);
    decode(c.f, a.data(), y.data(), n);
    const float lo = fi.to_float(fi.from_float(c.x, Rounding::truncate, 0));
    const float hi = fi.to_float(fi.from_float(c.x, Rounding::truncate, 0) + 1);
    const double ulp = std::fabs(static_cast<double>(hi) - lo);
    const double p = (std::fabs(static_cast<double>(c.x)) - std::fabs(static_cast<double>(lo))) / ulp;
    double sum = 0;
    for (float v : y) {
      ASSERT_TRUE(v == lo || v == hi) << fi.name << " " << v;
      sum += v;
    }
    const double mean = sum / static_cast<double>(n);
    const double se = ulp * std::sqrt(p * (1 - p) / static_cast<double>(n));
    EXPECT_LE(std::fabs(mean - c.x), 5 * se + 1e-12 * ulp) << fi.name << " x=" << c.x;
    EXPECT_GT(p, 0.0);   // the case is really between two codes
    // Reproducible from the seed, on every path; another seed gives other codes.
    for (Isa isa : isas_on_this_cpu()) {
      encode_isa(isa, c.f, Rounding::stochastic, x.data(), b.data(), n, 42);
      ASSERT_EQ(a, b) << isa_name(isa);
    }
    encode_ref(c.f, Rounding::stochastic, x.data(), b.data(), n, 43);
    EXPECT_NE(a, b);
  }
  // The counter hash: seed and the whole 64-bit index matter.
  EXPECT_NE(stochastic_bits(1, 0), stochastic_bits(2, 0));
  EXPECT_NE(stochastic_bits(1, 0), stochastic_bits(1, 1));
  EXPECT_NE(stochastic_bits(1, 5), stochastic_bits(1, 5 + (uint64_t{1} << 32)));
}

// Every SIMD path on this CPU equals the scalar reference bit for bit, for every format and
// rounding, on odd lengths, and writes nothing past encoded_bytes / n.
TEST(FormatsSimd, EveryPathEqualsScalarReferenceOnOddLengths) {
  const std::vector<float> pool = edge_and_random(2000, -30, 20, 7);
  Rng rng(5);
  for (Isa isa : isas_on_this_cpu()) {
    for (const FormatInfo& fi : all_formats()) {
      for (int64_t n : {0, 1, 7, 17, 33, 255}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = pool[rng.below(pool.size())];
        const size_t nb = static_cast<size_t>(encoded_bytes(fi.format, n));
        for (Rounding r : kRoundings) {
          std::vector<uint8_t> want(nb + 64, 0xCD), got(nb + 64, 0xCD);
          encode_ref(fi.format, r, x.data(), want.data(), n, 9);
          encode_isa(isa, fi.format, r, x.data(), got.data(), n, 9);
          ASSERT_EQ(want, got) << isa_name(isa) << " " << fi.name << " " << rounding_name(r)
                               << " n=" << n;
        }
        // Decoding random codes (every bit pattern is a valid input).
        std::vector<uint8_t> codes(nb);
        for (auto& c : codes) c = static_cast<uint8_t>(rng.next());
        std::vector<float> want(static_cast<size_t>(n) + 16, 7.0f), got = want;
        decode_ref(fi.format, codes.data(), want.data(), n);
        decode_isa(isa, fi.format, codes.data(), got.data(), n);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(bits(want[i]), bits(got[i]))
              << isa_name(isa) << " " << fi.name << " n=" << n << " i=" << i;
      }
    }
  }
  // The fast paths exist (so the comparison above really exercised them).
  for (Isa isa : isas_on_this_cpu()) {
    if (isa == Isa::portable) continue;
    for (const FormatInfo& fi : all_formats()) {
      if (fi.format == Format::f32) continue;
      EXPECT_TRUE(has_simd_decode(isa, fi.format)) << isa_name(isa) << " " << fi.name;
      if (fi.bits_per_value == 16 && isa != Isa::avx512_bf16) {
        EXPECT_TRUE(has_simd_encode(isa, fi.format, Rounding::truncate)) << fi.name;
        EXPECT_TRUE(has_simd_encode(isa, fi.format, Rounding::nearest_even)) << fi.name;
      }
    }
    if (isa == Isa::avx512_bf16) {
      EXPECT_TRUE(has_simd_encode(isa, Format::bf16, Rounding::nearest_even));
    }
  }
  EXPECT_FALSE(has_simd_encode(Isa::portable, Format::half, Rounding::nearest_even));
  // The default dispatch is one of these paths.
  std::vector<float> x = edge_and_random(100, -10, 10, 8), y(x.size()), z(x.size());
  std::vector<uint16_t> c(x.size());
  encode(Format::half, Rounding::nearest_even, x.data(), c.data(), static_cast<int64_t>(x.size()));
  decode(Format::half, c.data(), y.data(), static_cast<int64_t>(x.size()));
  decode_ref(Format::half, c.data(), z.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits(y[i]), bits(z[i]));
}
