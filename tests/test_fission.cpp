// Tests of the fission GEMM (include/deftnn/fission.h): every format, both modes (fission in
// registers, off-chip widening), every ISA path this CPU has, 1 and 2 threads, odd sizes, both
// B orientations, against a naive double-accumulating GEMM on the widened operands. The widened
// operands are computed here independently with the scalar reference codecs of formats.h:
//   A_eff = to_float(from_float(A, rounding)); Deft-16Q pairs rows 2d (lo) and 2d+1 (hi) of the
//   same k and widens hi with the lo spill (deft16q_decode_pair); bf16 in fission mode also
//   rounds B to nearest even with DAZ (bf16_from_float = vcvtne2ps2bf16, bf16_to_float = how
//   vdpbf16ps reads it), on every ISA path.
// Error metric (as tests/test_gemm.cpp): |C - C_ref| <= tol * (|alpha| sum_k |a_ik||b_kj| +
// |beta C0_ij|) + 1e-30, tol = 4e-7 sqrt(K) + 2e-7: fp32 accumulation in kernel order against
// a double reference (bf16 products are exact in fp32, so vdpbf16ps adds no error term beyond
// its fp32 sums). A wrong index, a mis-widened lane or a missed edge is an O(1) relative error.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "gemm/fission.h"
#include "gemm/sbgemm_pairs.h"

namespace deftnn {
namespace {

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

class FissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    isa_ = active_isa();
    threads_ = omp_get_max_threads();
  }
  void TearDown() override {
    set_active_isa(isa_);
    omp_set_num_threads(threads_);
  }
  Isa isa_ = Isa::portable;
  int threads_ = 1;
};

const std::vector<Format>& test_formats() {
  static const std::vector<Format> f = {
      Format::f32,      Format::half,     Format::deft16,   Format::deft16q,  Format::bf16,
      Format::deft8_e1, Format::deft8_e2, Format::deft8_e3, Format::deft8_e4, Format::deft8_e5,
      Format::deft8_e6, Format::deft8_e7};
  return f;
}

float widen_one(Format f, Rounding r, float x) {
  switch (f) {
    case Format::f32: return x;
    case Format::half: return half_to_float(half_from_float(x, r));
    case Format::deft16: return deft16_to_float(deft16_from_float(x, r));
    case Format::bf16: return bf16_to_float(bf16_from_float(x, r));
    default: {
      const int n = static_cast<int>(f) - static_cast<int>(Format::deft8_e1) + 1;
      return deft8_to_float(n, deft8_from_float(n, x, r));
    }
  }
}

// A (M x K row-major) as the kernels must see it.
std::vector<float> widen_a(Format f, Rounding r, const std::vector<float>& A, int64_t M,
                           int64_t K) {
  std::vector<float> w(A.size());
  if (f == Format::deft16q) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) {
        if (i % 2 == 0) {
          w[i * K + k] = deft16_to_float(deft16_from_float(A[i * K + k], r));
        } else {
          float lo, hi;
          deft16q_decode_pair(deft16q_pack(deft16_from_float(A[(i - 1) * K + k], r),
                                           deft16_from_float(A[i * K + k], r)),
                              &lo, &hi);
          w[i * K + k] = hi;
        }
      }
    return w;
  }
  for (size_t i = 0; i < A.size(); ++i) w[i] = widen_one(f, r, A[i]);
  return w;
}

// Whether the kernels multiply by B rounded to bf16: native bf16 (and its emulation) in
// fission mode, and Deft-8 (or bf16) in bf16_dot mode, on every ISA.
bool rounds_b(Format f, FissionMode mode) {
  if (mode == FissionMode::offchip) return false;
  return f == Format::bf16 || (mode == FissionMode::bf16_dot && is_deft8(f));
}

const char* mode_str(FissionMode m) {
  return m == FissionMode::offchip ? " offchip" : m == FissionMode::bf16_dot ? " bf16_dot" : " fission";
}

struct Shape {
  int64_t M, N, K;
};

// got (M x N, row stride ldc) against alpha * Aw * Bw + beta * C0 in double on the widened
// operands (Aw M x K, Bw K x N), within the fission GEMM's error bound; what names the case.
void expect_near_widened(const std::vector<float>& Aw, const std::vector<float>& Bw,
                         const std::vector<float>& C0, const float* got, int64_t M, int64_t N,
                         int64_t K, int64_t ldc, float alpha, float beta, const std::string& what) {
  const double tol = 4e-7 * std::sqrt(static_cast<double>(K)) + 2e-7;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(Aw[i * K + k]) * Bw[k * N + j];
        s += p;
        mag += std::fabs(p);
      }
      const double c0 = C0[i * ldc + j];
      const double ref = alpha * s + (beta == 0.0f ? 0.0 : beta * c0);
      ASSERT_LE(std::fabs(got[i * ldc + j] - ref),
                tol * (std::fabs(alpha) * mag + std::fabs(beta * c0)) + 1e-30)
          << what << " at (" << i << "," << j << ") got " << got[i * ldc + j] << " want " << ref;
    }
}

void run_case(Format f, Rounding r, FissionMode mode, Isa isa, const Shape& sh, bool tb,
              float alpha, float beta, uint32_t seed) {
  const int64_t M = sh.M, N = sh.N, K = sh.K;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> A(M * K), B(K * N), C0(M * (N + 3));
  for (auto& v : A) v = dist(gen);
  for (auto& v : B) v = dist(gen);
  for (auto& v : C0) v = dist(gen);
  const int64_t ldc = N + 3;
  // op(B) K x N; stored N x K when transposed.
  std::vector<float> Bst(B.size());
  const int64_t ldb = tb ? K : N;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) (tb ? Bst[j * K + k] : Bst[k * N + j]) = B[k * N + j];

  const FissionPackedA pa(f, r, false, M, K, A.data(), K, 0, mode);
  const std::vector<float> Aw = widen_a(f, r, A, M, K);
  const std::vector<float> got_w = pa.widened();
  for (size_t i = 0; i < Aw.size(); ++i)
    ASSERT_EQ(Aw[i], got_w[i]) << format_name(f) << " widened() element " << i;
  std::vector<float> Bw = B;
  if (rounds_b(f, mode))
    for (auto& v : Bw) v = bf16_to_float(bf16_from_float(v, Rounding::nearest_even));

  std::vector<float> C = C0;
  fission_gemm(pa, tb, N, alpha, Bst.data(), ldb, beta, C.data(), ldc, mode);
  const std::string what = std::string(format_name(f)) + " " + rounding_name(r) +
                           mode_str(mode) + " isa=" +
                           isa_name(isa) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                           " K=" + std::to_string(K) + " tb=" + std::to_string(tb);
  expect_near_widened(Aw, Bw, C0, C.data(), M, N, K, ldc, alpha, beta, what);
  for (int64_t i = 0; i < M; ++i) {
    // Padding columns untouched.
    for (int64_t j = N; j < ldc; ++j) ASSERT_EQ(C[i * ldc + j], C0[i * ldc + j]);
  }
}

// Every one of 1, 7, 17, 63, 255 appears as M, as N and as K (odd K for the bf16 pairs).
// Plus deeper K (769 odd: a padded bf16 pair at the end; 1000), and GEMVs (N = 1, 2: the tiles
// that read each strip as several streams, simd::split_steps, with a K tail after them and
// contiguous strip ranges per thread; K = 3 is all tail).
const std::vector<Shape> kShapes = {{1, 1, 1},     {7, 17, 63},    {17, 7, 255}, {63, 255, 7},
                                    {255, 1, 17},  {255, 63, 1},   {1, 255, 255}, {63, 13, 64},
                                    {33, 13, 769}, {17, 29, 1000}, {97, 2, 385},  {200, 1, 257},
                                    {130, 1, 3}};

TEST_F(FissionTest, EqualsNaiveOnWidenedOperandsEveryIsaFormatMode) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (Format f : test_formats())
      for (Rounding r : {Rounding::truncate, Rounding::nearest_even})
        for (FissionMode mode : {FissionMode::fission, FissionMode::offchip}) {
          uint32_t seed = 1;
          for (const Shape& sh : kShapes) {
            for (int threads : {1, 2}) {
              omp_set_num_threads(threads);
              const bool tb = (seed & 1) != 0;
              const float beta = seed % 3 == 0 ? 0.0f : 0.5f;
              run_case(f, r, mode, isa, sh, tb, 1.25f, beta, seed++);
              if (HasFatalFailure()) return;
            }
          }
        }
  }
}

// B's rows picked by an index (an eliminated fc's retained inputs, gathered by the packing step):
// equal to the fission GEMM's bound on the hand-gathered operands, every ISA, format (native bf16
// goes through its K-pair packer) and mode, both B layouts, GEMV and GEMM shapes; the index runs
// in place with a few swaps, and scrambled.
TEST_F(FissionTest, GatheredBRowsEqualNaiveOnTheRetainedRows) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (Format f : test_formats())
      for (FissionMode mode : {FissionMode::fission, FissionMode::offchip}) {
        uint32_t seed = 40;
        for (const Shape& sh : {Shape{37, 1, 61}, Shape{17, 5, 255}, Shape{63, 33, 40}})
          for (bool tb : {true, false}) {
            omp_set_num_threads(seed % 2 ? 2 : 1);
            const int64_t M = sh.M, N = sh.N, K = sh.K, KF = K + 9;
            std::mt19937 gen(seed++);
            std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
            std::vector<int64_t> idx(K);
            for (int64_t k = 0; k < K; ++k) idx[k] = k;
            if (seed % 2) {
              for (int64_t t = 0; t < 4; ++t) idx[(t * 11) % K] = K + t;
            } else {
              std::vector<int64_t> all(KF);
              for (int64_t k = 0; k < KF; ++k) all[k] = k;
              std::shuffle(all.begin(), all.end(), gen);
              std::copy(all.begin(), all.begin() + K, idx.begin());
            }
            std::vector<float> A(M * K), Bst(KF * N), C0(M * N);
            for (auto& v : A) v = dist(gen);
            for (auto& v : Bst) v = dist(gen);
            for (auto& v : C0) v = dist(gen);
            const int64_t ldb = tb ? KF : N;   // stored N x KF (tb) or KF x N
            std::vector<float> B(K * N);       // the gathered op(B)
            for (int64_t k = 0; k < K; ++k)
              for (int64_t j = 0; j < N; ++j)
                B[k * N + j] = tb ? Bst[j * ldb + idx[k]] : Bst[idx[k] * ldb + j];
            const FissionPackedA pa(f, Rounding::nearest_even, false, M, K, A.data(), K, 0, mode);
            const std::vector<float> Aw = widen_a(f, Rounding::nearest_even, A, M, K);
            std::vector<float> Bw = B;
            if (rounds_b(f, mode))
              for (auto& v : Bw) v = bf16_to_float(bf16_from_float(v, Rounding::nearest_even));
            std::vector<float> C = C0;
            fission_gemm(pa, tb, N, 1.0f, Bst.data(), ldb, 0.5f, C.data(), N, mode, idx.data());
            expect_near_widened(Aw, Bw, C0, C.data(), M, N, K, N, 1.0f, 0.5f,
                                std::string(format_name(f)) + mode_str(mode) + " isa=" +
                                    isa_name(isa) + " M=" + std::to_string(M) + " N=" +
                                    std::to_string(N) + " K=" + std::to_string(K) +
                                    " tb=" + std::to_string(tb));
            if (HasFatalFailure()) return;
          }
      }
  }
}

// Deft-8 in registers prescales B by 2^(127 - bias) when every value of B is below 2^(1 + bias)
// and then skips the per-weight multiply (src/gemm/fission.h); a B with a larger, infinite or NaN
// value runs the multiplying kernel. Both must equal the off-chip path (strips widened to fp32,
// the fp32 kernel, same accumulation order) bit for bit: fma(bits, b * scale) == fma(bits *
// scale, b) exactly. B here holds values just below the limit (prescaled), at the limit, huge, inf
// or NaN (fallback), on every ISA path, 1 and 2 threads, GEMV and GEMM shapes.
TEST_F(FissionTest, Deft8PrescaledPanelsEqualOffchipBitForBit) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int n = 1; n <= 7; ++n) {
      const Format f = deft8_format(n);
      const float limit = std::ldexp(1.0f, 1 + (1 << (n - 1)) - 1);
      for (const Shape& sh : {Shape{63, 1, 255}, Shape{33, 40, 17}, Shape{7, 29, 64}})
        for (int special = 0; special < 5; ++special)
          for (int threads : {1, 2}) {
            omp_set_num_threads(threads);
            const int64_t M = sh.M, N = sh.N, K = sh.K;
            std::mt19937 gen(static_cast<uint32_t>(100 * n + 10 * special + threads));
            std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
            std::vector<float> A(M * K), B(K * N);
            for (auto& v : A) v = dist(gen) * 0.5f;
            for (auto& v : B) v = dist(gen);
            // Columns 0 and (for N > 13) 13 hold the special value.
            const float sv[] = {limit, std::nextafter(limit, 0.0f), 1e30f, INFINITY, NAN};
            for (int64_t k = 3; k < K; k += 5) {
              B[k * N] = special % 2 ? -sv[special] : sv[special];
              if (N > 13) B[k * N + 13] = sv[special];
            }
            const FissionPackedA pa(f, Rounding::nearest_even, false, M, K, A.data(), K);
            std::vector<float> c1(M * N), c2(M * N);
            fission_gemm(pa, false, N, 1.0f, B.data(), N, 0.0f, c1.data(), N,
                         FissionMode::fission);
            fission_gemm(pa, false, N, 1.0f, B.data(), N, 0.0f, c2.data(), N,
                         FissionMode::offchip);
            for (int64_t i = 0; i < M * N; ++i) {
              if (std::isnan(c2[i])) {
                ASSERT_TRUE(std::isnan(c1[i])) << format_name(f) << " at " << i;
                continue;
              }
              ASSERT_EQ(c1[i], c2[i]) << format_name(f) << " isa=" << isa_name(isa) << " M=" << M
                                      << " N=" << N << " K=" << K << " special " << special
                                      << " at " << i;
            }
          }
      // fission_conv prescales the image copy: the same on a 3x3 convolution (2 images).
      FissionConvShape g;
      g.C = 5; g.H = 9; g.W = 11; g.kh = g.kw = 3; g.pt = g.pl = 1; g.OH = 9; g.OW = 11;
      g.images = 2;
      g.image_stride = g.C * g.H * g.W + 3;
      const int64_t M = 37, K = g.C * 9, N = g.images * g.OH * g.OW;
      for (int special = 0; special < 5; ++special) {
        std::mt19937 gen(static_cast<uint32_t>(7 * n + special));
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        std::vector<float> A(M * K), X(g.images * g.image_stride);
        for (auto& v : A) v = dist(gen) * 0.5f;
        for (auto& v : X) v = dist(gen);
        const float sv[] = {limit, std::nextafter(limit, 0.0f), 1e30f, INFINITY, NAN};
        X[g.image_stride + 40] = special % 2 ? -sv[special] : sv[special];
        const FissionPackedA pa(f, Rounding::nearest_even, false, M, K, A.data(), K);
        std::vector<float> c1(M * N), c2(M * N);
        fission_conv(pa, g, X.data(), 1.0f, 0.0f, c1.data(), N, FissionMode::fission);
        fission_conv(pa, g, X.data(), 1.0f, 0.0f, c2.data(), N, FissionMode::offchip);
        for (int64_t i = 0; i < M * N; ++i) {
          if (std::isnan(c2[i])) {
            ASSERT_TRUE(std::isnan(c1[i])) << format_name(f) << " conv at " << i;
            continue;
          }
          ASSERT_EQ(c1[i], c2[i]) << format_name(f) << " conv isa=" << isa_name(isa)
                                  << " special " << special << " at " << i;
        }
      }
    }
  }
}

TEST_F(FissionTest, StochasticRoundingMatchesWidenedAndIsReproducible) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    const int64_t M = 37, K = 45, N = 9;
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> A(M * K), B(K * N);
    for (auto& v : A) v = dist(gen);
    for (auto& v : B) v = dist(gen);
    for (Format f : {Format::deft16, Format::deft8_e4, Format::half, Format::bf16}) {
      const FissionPackedA p1(f, Rounding::stochastic, false, M, K, A.data(), K, 99);
      const FissionPackedA p2(f, Rounding::stochastic, false, M, K, A.data(), K, 99);
      const auto w1 = p1.widened(), w2 = p2.widened();
      ASSERT_EQ(w1, w2);
      std::vector<float> C(M * N);
      fission_gemm(p1, false, N, 1.0f, B.data(), N, 0.0f, C.data(), N, FissionMode::offchip);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) {
            s += static_cast<double>(w1[i * K + k]) * B[k * N + j];
            mag += std::fabs(static_cast<double>(w1[i * K + k]) * B[k * N + j]);
          }
          ASSERT_NEAR(C[i * N + j], s, 4e-6 * mag + 1e-30) << format_name(f);
        }
    }
  }
}

TEST_F(FissionTest, TransposedAAndAlphaZeroAndErrors) {
  const int64_t M = 19, K = 23, N = 5;
  std::vector<float> A(M * K), At(K * M), B(K * N, 1.0f);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) At[k * M + i] = A[i * K + k] = 0.25f * ((i * 7 + k) % 9 - 4);
  const FissionPackedA p(Format::deft16, Rounding::truncate, false, M, K, A.data(), K);
  const FissionPackedA pt(Format::deft16, Rounding::truncate, true, M, K, At.data(), M);
  EXPECT_EQ(p.widened(), pt.widened());
  std::vector<float> C(M * N, std::nanf(""));
  fission_gemm(p, false, N, 0.0f, B.data(), N, 0.0f, C.data(), N);
  for (float v : C) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(FissionPackedA(Format::ocp_e4m3, Rounding::nearest_even, false, M, K, A.data(), K),
               Error);
  EXPECT_THROW(FissionPackedA(Format::half, Rounding::nearest_even, false, 0, K, A.data(), K),
               Error);
  EXPECT_THROW(fission_gemm(p, false, N, 1.0f, B.data(), N - 1, 0.0f, C.data(), N), Error);
  EXPECT_EQ(p.bytes() % 64, 0);
}

// fission_conv: the column matrix built straight into the packed panels. Against the same fission
// kernels on an explicitly im2col'ed B (bit for bit: same panel values, same accumulation order)
// and against a naive double-accumulating convolution on the widened operands (tolerance as
// above). Geometries: M, N (images x OH x OW) and K (C x kh x kw) take 1, 7, 17, 255 and other
// odd sizes; strides 1..4, padding on either side, dilation, several images side by side with an
// image stride larger than C x H x W (a group of a wider input); every ISA path, every format,
// both modes, 1 and 2 threads.
struct ConvCase {
  int64_t M, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, images;
};

// A (a elements), the images X (x) and C0 (c) of a conv case, uniform in [-2, 2), drawn from
// gen in that order.
struct ConvOperands {
  std::vector<float> A, X, C0;
};
ConvOperands random_conv_operands(int64_t a, int64_t x, int64_t c, std::mt19937& gen) {
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  ConvOperands o{std::vector<float>(a), std::vector<float>(x), std::vector<float>(c)};
  for (auto* v : {&o.A, &o.X, &o.C0})
    for (float& e : *v) e = dist(gen);
  return o;
}

// The fission_conv geometry of a case, images image_stride floats apart.
FissionConvShape conv_shape(const ConvCase& cc, int64_t image_stride) {
  FissionConvShape g;
  g.C = cc.C; g.H = cc.H; g.W = cc.W; g.kh = cc.kh; g.kw = cc.kw; g.sh = cc.sh; g.sw = cc.sw;
  g.pt = cc.pt; g.pl = cc.pl; g.dh = cc.dh; g.dw = cc.dw;
  g.OH = (cc.H + cc.pt + cc.pb - (cc.dh * (cc.kh - 1) + 1)) / cc.sh + 1;
  g.OW = (cc.W + cc.pl + cc.pr - (cc.dw * (cc.kw - 1) + 1)) / cc.sw + 1;
  g.images = cc.images;
  g.image_stride = image_stride;
  return g;
}

// Naive im2col of all images side by side: B[k * N + n], each value passed through `round`.
template <class Round>
std::vector<float> naive_columns(const ConvCase& cc, const FissionConvShape& g,
                                 const std::vector<float>& X, Round round) {
  const int64_t K = cc.C * cc.kh * cc.kw, P = g.OH * g.OW, N = cc.images * P;
  std::vector<float> B(K * N, 0.0f);
  for (int64_t t = 0; t < cc.images; ++t)
    for (int64_t c = 0, k = 0; c < cc.C; ++c)
      for (int64_t i = 0; i < cc.kh; ++i)
        for (int64_t j = 0; j < cc.kw; ++j, ++k)
          for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
              const int64_t ih = oh * cc.sh - cc.pt + i * cc.dh, iw = ow * cc.sw - cc.pl + j * cc.dw;
              if (ih >= 0 && ih < cc.H && iw >= 0 && iw < cc.W)
                B[k * N + t * P + oh * g.OW + ow] =
                    round(X[t * g.image_stride + (c * cc.H + ih) * cc.W + iw]);
            }
  return B;
}

// Each image's output written in its own place (FissionConvShape::out_image_stride: rows ldi
// apart, images cimg apart, as a layer writes an NCHW batch) equals the side-by-side result
// `side` (C0 + the GEMM, ldc apart), bit for bit, with and without the output pass (bias, a
// residual laid out per image, ReLU); nothing outside the outputs is written.
void expect_images_in_place(const FissionPackedA& pa, const FissionConvShape& g,
                            const std::vector<float>& X, float alpha, float beta,
                            const std::vector<float>& C0, int64_t ldc,
                            const std::vector<float>& side, FissionMode mode, std::mt19937& gen,
                            const std::string& what) {
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  const int64_t M = pa.rows(), P = g.OH * g.OW, T = g.images;
  const int64_t ldi = P + 3, cimg = M * ldi + 5, rimg = M * P + 2;
  FissionConvShape gi = g;
  gi.out_image_stride = cimg;
  std::vector<float> bias(M), res(T * rimg);
  for (auto& v : bias) v = dist(gen);
  for (auto& v : res) v = dist(gen);
  for (int variant = 0; variant < 2; ++variant) {
    TileEpilogue epi;
    epi.bias = bias.data();
    epi.res = res.data();
    epi.ldr = P;
    epi.res_image_stride = rimg;
    epi.relu = true;
    std::vector<float> out(T * cimg, 7.0f);   // 7: never an output here (|C| < 7 is not given)
    std::vector<char> is_out(T * cimg, 0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t p = 0; p < P; ++p) {
          out[t * cimg + i * ldi + p] = C0[i * ldc + t * P + p];
          is_out[t * cimg + i * ldi + p] = 1;
        }
    fission_conv(pa, gi, X.data(), alpha, beta, out.data(), ldi, mode, nullptr,
                 variant ? &epi : nullptr);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t p = 0; p < P; ++p) {
          float v = side[i * ldc + t * P + p];
          if (variant) {
            v += bias[i];
            v += res[t * rimg + i * P + p];
            v = v > 0.0f ? v : 0.0f * v;
          }
          ASSERT_EQ(out[t * cimg + i * ldi + p], v)
              << what << " images in place, output pass " << variant << ": image " << t
              << " row " << i << " pixel " << p;
        }
    for (int64_t q = 0; q < T * cimg; ++q) {
      if (!is_out[q]) {
        ASSERT_EQ(out[q], 7.0f) << what << " images in place: wrote " << q;
      }
    }
  }
  // Overlapping images are refused.
  gi.out_image_stride = (M - 1) * ldi + P - 1;
  std::vector<float> big(T * cimg + M * ldi);
  if (gi.out_image_stride > 0) {   // (0 means side by side)
    EXPECT_THROW(fission_conv(pa, gi, X.data(), alpha, beta, big.data(), ldi, mode), Error) << what;
  }
}

void run_conv_case(Format f, FissionMode mode, Isa isa, const ConvCase& cc, float alpha, float beta,
                   uint32_t seed) {
  const FissionConvShape g = conv_shape(cc, cc.C * cc.H * cc.W + 5);
  const int64_t M = cc.M, K = cc.C * cc.kh * cc.kw, P = g.OH * g.OW, N = cc.images * P;
  const int64_t ldc = N + 2;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  auto [A, X, C0] = random_conv_operands(M * K, cc.images * g.image_stride, M * ldc, gen);
  const std::vector<float> B = naive_columns(cc, g, X, [](float v) { return v; });
  const FissionPackedA pa(f, Rounding::nearest_even, false, M, K, A.data(), K, 0, mode);
  std::vector<float> want = C0, got = C0;
  fission_gemm(pa, false, N, alpha, B.data(), N, beta, want.data(), ldc, mode);
  // With B panels (forced): the same panels as fission_gemm's, bit for bit.
  std::vector<float> panels = C0;
  set_fission_conv_panels(true);
  fission_conv(pa, g, X.data(), alpha, beta, panels.data(), ldc, mode);
  set_fission_conv_panels(false);
  // The default: the direct tile reading B from the image where the ISA has one (its columns
  // are cut per output row, so tile widths, and for 1-2 wide tiles the summation order,
  // differ from the panels': checked against the naive convolution below).
  fission_conv(pa, g, X.data(), alpha, beta, got.data(), ldc, mode);
  const std::string what = std::string(format_name(f)) + mode_str(mode) + " isa=" +
                           isa_name(isa) + " M=" + std::to_string(M) + " K=" + std::to_string(K) +
                           " N=" + std::to_string(N) + " stride " + std::to_string(cc.sh) + "x" +
                           std::to_string(cc.sw) + " images " + std::to_string(cc.images);
  for (int64_t i = 0; i < M * ldc; ++i)
    ASSERT_EQ(panels[i], want[i]) << what << " (B panels) at " << i / ldc << "," << i % ldc;
  // And the naive convolution on the widened operands.
  const std::vector<float> Aw = pa.widened();
  std::vector<float> Bw = B;
  if (rounds_b(f, mode))
    for (auto& v : Bw) v = bf16_to_float(bf16_from_float(v, Rounding::nearest_even));
  expect_near_widened(Aw, Bw, C0, got.data(), M, N, K, ldc, alpha, beta, what);
  // The conv output pass done by the tile kernel (TileEpilogue bias / res / relu; in registers
  // on AVX-512) equals separate bias, add and ReLU passes over that result, bit for bit.
  std::vector<float> bias(M), res(M * N);
  for (auto& v : bias) v = dist(gen);
  for (auto& v : res) v = dist(gen);
  for (int variant = 0; variant < 4; ++variant) {
    TileEpilogue epi;
    epi.bias = variant != 1 ? bias.data() : nullptr;   // 0: bias; 1: res + relu;
    epi.res = variant == 1 || variant == 2 ? res.data() : nullptr;   // 2: all; 3: bias + relu
    epi.ldr = N;
    epi.relu = variant != 0;
    std::vector<float> ref = got, fused = C0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float v = ref[i * ldc + j];
        if (epi.bias) v += bias[i];
        if (epi.res) v += res[i * N + j];
        if (epi.relu) v = v > 0.0f ? v : 0.0f * v;
        ref[i * ldc + j] = v;
      }
    fission_conv(pa, g, X.data(), alpha, beta, fused.data(), ldc, mode, nullptr, &epi);
    for (int64_t i = 0; i < M * ldc; ++i)
      ASSERT_EQ(fused[i], ref[i]) << what << " epilogue variant " << variant << " at " << i / ldc
                                  << "," << i % ldc;
  }
  expect_images_in_place(pa, g, X, alpha, beta, C0, ldc, got, mode, gen, what);
}

// Deft-8 on the bf16 unit (FissionMode::bf16_dot): on avx512_bf16 with VBMI the strips are K
// pairs of codes widened to bf16 by table lookups and multiplied by vdpbf16ps; elsewhere the
// fp32 kernels with B rounded to bf16. Either way: the exact Deft-8 weights times B rounded to
// bf16, on every exponent width, the odd shapes, both roundings, GEMV and GEMM, every ISA; and
// as a convolution (K-pair panels built from the image).
TEST_F(FissionTest, Deft8OnTheBf16UnitEqualsNaiveEveryIsa) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int n = 1; n <= 7; ++n) {
      const Format f = deft8_format(n);
      const FissionPackedA probe(f, Rounding::nearest_even, false, 33, 8,
                                 std::vector<float>(33 * 8, 0.5f).data(), 8, 0,
                                 FissionMode::bf16_dot);
      EXPECT_EQ(probe.native_bf16(), isa == Isa::avx512_bf16 && cpu_has_avx512vbmi())
          << format_name(f) << " " << isa_name(isa);
      for (Rounding r : {Rounding::truncate, Rounding::nearest_even}) {
        uint32_t seed = 40 + n;
        for (const Shape& sh : kShapes)
          for (int threads : {1, 2}) {
            omp_set_num_threads(threads);
            run_case(f, r, FissionMode::bf16_dot, isa, sh, (seed & 1) != 0, 0.75f,
                     seed % 3 == 0 ? 0.0f : 0.5f, seed);
            ++seed;
            if (HasFatalFailure()) return;
          }
      }
      for (const ConvCase& cc : {ConvCase{40, 5, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},
                                 ConvCase{7, 3, 23, 23, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1}}) {
        run_conv_case(f, FissionMode::bf16_dot, isa, cc, 1.0f, 0.0f, 70 + n);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(FissionTest, ConvBuildsPanelsFromTheImageEveryIsaFormatMode) {
  //                      M   C   H   W kh kw sh sw pt pb pl pr dh dw images
  const std::vector<ConvCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},         // M = N = K = 1
      {17, 7, 5, 9, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1},        // K = 7, N = 15, strided 1x1
      {7, 3, 17, 1, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1},        // N = 17 (one column), K = 9
      {255, 3, 23, 23, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1},   // conv1-like: K = 363, stride 4
      {7, 5, 15, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       // N = 255 (15 x 17), K = 45
      {13, 2, 9, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 3},        // dilation 2, 3 images, K = 18
      {33, 1, 2, 3, 5, 5, 3, 2, 2, 1, 1, 2, 1, 1, 2},        // kernel larger than the image
      {40, 4, 13, 13, 3, 3, 2, 3, 1, 0, 0, 1, 1, 1, 7},      // 7 images of OW < NR, K = 36
      {17, 255, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},      // K = 255, padded 1x1
      {40, 87, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       // K = 783, OW = 7 < NR
      {16, 9, 5, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3},        // 1x1 read in place, 3 images, M 16
      {7, 17, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},        // 1x1 in place, N = 1
      {48, 3, 9, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       // OW = 56: rows cut 12 + 11 x 4
      {24, 5, 8, 15, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, 2},       // short rows, column stride 2
      {13, 130, 6, 40, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2},     // M <= 16, K = 130: pixel tile
      {20, 3, 7, 222, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},      // pixel tile, OW = 111: 32+32+47
      {37, 3, 9, 140, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1},      // first layer 7x7 s2, K = 147,
                                                             // OW = 70: 32 + 38 (3 vectors)
      {24, 128, 12, 12, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 16},   // 24 channels, K = 128, 1.2 MB
                                                             // of images: pixel tile
      {100, 228, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     // K = 2052: strips >= 128 KiB, each
                                                              // thread its own, the next prefetched
      {20, 1, 28, 28, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 2},      // LeNet's conv1: pixel tile on two
                                                             // 24-wide rows per chunk
      {13, 2, 23, 21, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},      // two 21-wide rows, odd OH: the last
                                                             // row alone
      {9, 3, 19, 36, 3, 3, 1, 2, 0, 0, 1, 0, 1, 1, 1},       // 17 wide (column stride 2), 17 rows
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (Format f : {Format::f32, Format::half, Format::deft16, Format::deft16q, Format::bf16,
                     Format::deft8_e4})
      for (FissionMode mode : {FissionMode::fission, FissionMode::offchip}) {
        uint32_t seed = 11;
        for (const ConvCase& cc : cases)
          for (int threads : {1, 2}) {
            omp_set_num_threads(threads);
            const float alpha = seed % 2 ? 1.0f : 0.75f, beta = seed % 3 ? 0.0f : 0.5f;
            run_conv_case(f, mode, isa, cc, alpha, beta, seed++);
            if (HasFatalFailure()) return;
          }
      }
  }
  const FissionPackedA p(Format::bf16, Rounding::nearest_even, false, 4, 9, std::vector<float>(36).data(), 9);
  FissionConvShape g;
  g.C = 2; g.H = g.W = 4; g.kh = g.kw = 2; g.OH = g.OW = 3;
  std::vector<float> x(32), c(36);
  EXPECT_THROW(fission_conv(p, g, x.data(), 1.0f, 0.0f, c.data(), 9), Error);   // K 8 != 9
}

// Two threads on a direct conv share the last quarter of each one's work (drive_direct): a
// thread done with its own share runs the other's remaining tiles, reading the owner's copy of
// the image rows. In the first runs thread 1 sleeps once its share is offered
// (g_share_tails_stall_us), so thread 0 takes its tail whatever the machine's load (under
// `ctest -j`, two threads time-sharing a core each ran its own share whole); the others run as
// they come. Every run, whoever ran which tile, equals the one-thread run bit for bit (each
// tile sums its whole K), which equals the naive convolution.
TEST_F(FissionTest, ConvSharedTailsEqualOneThreadRun) {
  const ConvCase cases[] = {
      {40, 12, 7, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},   // 35 chunks (17 + 18), small A
      {40, 3, 7, 112, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},   // pixel tile: 21 chunks (10 + 11)
      {160, 228, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},  // 5 strips of 256 KiB (2 + 3)
      {64, 32, 13, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},  // 15 chunks: shares cut mid-chunk
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    uint32_t seed = 90;
    for (const ConvCase& cc : cases) {
      const FissionConvShape g = conv_shape(cc, cc.C * cc.H * cc.W);
      const int64_t M = cc.M, K = cc.C * cc.kh * cc.kw, N = g.OH * g.OW, ldc = N + 1;
      std::mt19937 gen(seed++);
      auto [A, X, C0] = random_conv_operands(M * K, g.image_stride, M * ldc, gen);
      std::vector<float> res(M * N);
      for (auto& v : res) v = static_cast<float>(gen() % 7) - 3.0f;
      TileEpilogue epi;   // the residual: the path that prefetches the next chunk's lines
      epi.res = res.data();
      epi.ldr = N;
      const FissionPackedA pa(Format::f32, Rounding::nearest_even, false, M, K, A.data(), K);
      const bool direct = std::string(fission_conv_kernel_name(pa, g)).find("direct") !=
                          std::string::npos;
      const std::string what = std::string(isa_name(isa)) + " M=" + std::to_string(M) +
                               " K=" + std::to_string(K) + " N=" + std::to_string(N);
      // A fresh image every run, the two-thread run first: a tile reading rows that no thread
      // copied in this run would find the previous image's there.
      const int64_t shared0 = gemm::g_shared_tiles.load();
      for (int rep = 0; rep < 30; ++rep) {
        for (auto& v : X) v = static_cast<float>(gen() % 2001) / 500.0f - 2.0f;
        omp_set_num_threads(2);
        std::vector<float> two = C0;
        gemm::g_share_tails_stall_us = rep < 3 ? 3000 : 0;
        FissionConvShape g2 = g;   // every other run prefetching the output lines: the same
        g2.out_streams = rep % 2 == 1;
        fission_conv(pa, g2, X.data(), 1.0f, 0.0f, two.data(), ldc, FissionMode::fission,
                     nullptr, &epi);
        gemm::g_share_tails_stall_us = 0;
        omp_set_num_threads(1);
        std::vector<float> one = C0;
        fission_conv(pa, g, X.data(), 1.0f, 0.0f, one.data(), ldc, FissionMode::fission,
                     nullptr, &epi);
        for (int64_t i = 0; i < M * ldc; ++i)
          ASSERT_EQ(two[i], one[i]) << what << " rep " << rep << " at " << i / ldc << ","
                                    << i % ldc;
        if (rep == 0) {   // the one-thread run: the naive convolution plus the residual
          std::vector<float> plain = C0;
          fission_conv(pa, g, X.data(), 1.0f, 0.0f, plain.data(), ldc);
          expect_near_widened(pa.widened(), naive_columns(cc, g, X, [](float v) { return v; }),
                              C0, plain.data(), M, N, K, ldc, 1.0f, 0.0f, what);
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
              ASSERT_EQ(one[i * ldc + j], plain[i * ldc + j] + res[i * N + j]) << what;
        }
      }
      const int64_t shared = gemm::g_shared_tiles.load() - shared0;
      if (direct && &cc != &cases[3]) {
        EXPECT_GT(shared, 0) << what << ": no tile ran from the other thread's share";
      } else {
        EXPECT_EQ(shared, 0) << what << (direct ? ": 15 chunks do not share tails"
                                                : ": B panels do not share tails");
      }
    }
  }
}

// One case of the pair tests below: the packed weights mapped back to the natural (c, tap)
// order, fission_conv against the naive double-accumulating convolution on the bf16-rounded
// operands, the output pass bit for bit, and the images written in place.
void check_pair_conv(bool taps_paired, const ConvCase& cc, Isa isa, int threads, uint32_t seed) {
  omp_set_num_threads(threads);
  const FissionConvShape g = conv_shape(cc, cc.C * cc.H * cc.W + 3);
  const int64_t M = cc.M, taps = cc.kh * cc.kw, K = cc.C * taps, P = g.OH * g.OW;
  const int64_t N = cc.images * P, ldc = N + 1;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  auto [A, X, C0] = random_conv_operands(M * K, cc.images * g.image_stride, M * ldc, gen);
  const FissionPackedA pa =
      taps_paired ? FissionPackedA::conv_tap_pairs(Format::bf16, Rounding::nearest_even, M,
                                                   cc.C, cc.kh, cc.kw, A.data())
                  : FissionPackedA::conv_channel_pairs(Format::bf16, Rounding::nearest_even, M,
                                                       cc.C, taps, A.data());
  const std::string what = std::string(taps_paired ? "tap" : "channel") + " pairs isa=" +
                           isa_name(isa) + " M=" + std::to_string(M) + " C=" +
                           std::to_string(cc.C) + " kernel " + std::to_string(cc.kh) +
                           " images " + std::to_string(cc.images) + " threads " +
                           std::to_string(threads);
  const bool native = isa == Isa::avx512_bf16;
  ASSERT_EQ(pa.channel_pair_taps() > 0, native) << what;
  const int64_t kwp = (cc.kw + 1) / 2;
  const int64_t Kp = taps_paired ? 2 * cc.C * cc.kh * kwp : 2 * ((cc.C + 1) / 2) * taps;
  ASSERT_EQ(pa.depth(), native ? Kp : K) << what;
  ASSERT_EQ(pa.tap_pair_kw(), native && taps_paired ? cc.kw : 0) << what;
  // Where natural row (c, t = i * kw + j) lies in the packed order.
  auto packed_row = [&](int64_t c, int64_t t) {
    return taps_paired ? ((c * cc.kh + t / cc.kw) * kwp + t % cc.kw / 2) * 2 + t % cc.kw % 2
                       : ((c / 2) * taps + t) * 2 + c % 2;
  };
  // A as the kernel multiplies it, in the natural order.
  const std::vector<float> Wd = pa.widened();
  std::vector<float> Aw(M * K);
  for (int64_t o = 0; o < M; ++o)
    for (int64_t c = 0; c < cc.C; ++c)
      for (int64_t t = 0; t < taps; ++t)
        Aw[o * K + c * taps + t] =
            native ? Wd[o * pa.depth() + packed_row(c, t)] : Wd[o * K + c * taps + t];
  if (native && !taps_paired) {   // the pad channel's weights are zero
    for (int64_t o = 0; o < M && cc.C % 2; ++o)
      for (int64_t t = 0; t < taps; ++t)
        ASSERT_EQ(Wd[o * pa.depth() + ((cc.C / 2) * taps + t) * 2 + 1], 0.0f) << what;
  }
  if (native && taps_paired) {   // the pad tap's weights are zero
    for (int64_t o = 0; o < M && cc.kw % 2; ++o)
      for (int64_t r = 0; r < cc.C * cc.kh; ++r)
        ASSERT_EQ(Wd[o * pa.depth() + (r * kwp + kwp - 1) * 2 + 1], 0.0f) << what;
  }
  const std::vector<float> Bw = naive_columns(cc, g, X, [](float v) {
    return bf16_to_float(bf16_from_float(v, Rounding::nearest_even));
  });
  const float alpha = (seed + 1) % 2 ? 1.0f : 0.5f, beta = (seed + 1) % 3 ? 0.0f : 0.25f;
  std::vector<float> got = C0;
  fission_conv(pa, g, X.data(), alpha, beta, got.data(), ldc);
  expect_near_widened(Aw, Bw, C0, got.data(), M, N, K, ldc, alpha, beta, what);
  if (::testing::Test::HasFatalFailure()) return;
  // The output pass in the tile's store: bias + residual + ReLU, bit for bit.
  std::vector<float> bias(M), res(M * N);
  for (auto& v : bias) v = dist(gen);
  for (auto& v : res) v = dist(gen);
  TileEpilogue epi;
  epi.bias = bias.data();
  epi.res = res.data();
  epi.ldr = N;
  epi.relu = true;
  std::vector<float> fused = C0;
  fission_conv(pa, g, X.data(), alpha, beta, fused.data(), ldc, FissionMode::fission,
               nullptr, &epi);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float v = got[i * ldc + j] + bias[i];
      v += res[i * N + j];
      v = v > 0.0f ? v : 0.0f * v;
      ASSERT_EQ(fused[i * ldc + j], v) << what << " output pass at " << i << "," << j;
    }
  expect_images_in_place(pa, g, X, alpha, beta, C0, ldc, got, FissionMode::fission, gen,
                         what);
}

// Every case on every ISA path, 1 and 2 threads (seeds from seed on).
void check_pair_convs(bool taps_paired, const std::vector<ConvCase>& cases, uint32_t seed) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (const ConvCase& cc : cases)
      for (int threads : {1, 2}) {
        check_pair_conv(taps_paired, cc, isa, threads, seed++);
        if (::testing::Test::HasFatalFailure()) return;
      }
  }
}

// Native bf16 with channel-pair weights (FissionPackedA::conv_channel_pairs): K reordered so
// each pair is channels (2cp, 2cp + 1) at one tap, B read from a channel-pair copy of the
// image (or, several images of short rows, packed into K-pair panels in that order). Against
// the naive double-accumulating convolution on the bf16-rounded operands (A as packed, mapped
// back to the natural (c, tap) order; B rounded to nearest even like vcvtne2ps2bf16), odd C (a
// zero pad channel), strides, dilation, several images, 1 and 2 threads, with and without the
// output pass. Elsewhere the factory packs as usual.
TEST_F(FissionTest, ConvChannelPairsMatchNaiveOnBf16Operands) {
  //                      M   C   H   W kh kw sh sw pt pb pl pr dh dw images
  const std::vector<ConvCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},         // C = 1: one pair, high half zero
      {33, 3, 23, 23, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1},    // conv1-like, odd C
      {17, 16, 9, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},      // 2 images, OW = 13
      {40, 7, 9, 9, 3, 3, 2, 2, 2, 1, 1, 2, 2, 2, 1},        // stride 2, dilation 2
      {64, 9, 5, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3},        // 1x1, odd C, 3 images
      {24, 17, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},       // short rows, 3 images: K-pair
                                                             // panels, odd C = 17
      {20, 6, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},        // one image, 9-wide rows: the
                                                             // column-shifted pair copies
  };
  check_pair_convs(false, cases, 101);
  if (HasFatalFailure()) return;
  // Channel pairs with retained rows or another geometry are refused, naming the problem.
  set_active_isa(Isa::avx512_bf16);
  if (active_isa() == Isa::avx512_bf16) {
    std::vector<float> w(4 * 2 * 9, 0.5f), x(2 * 16), c(4 * 4);
    const FissionPackedA p = FissionPackedA::conv_channel_pairs(Format::bf16,
                                                                Rounding::nearest_even, 4, 2, 9,
                                                                w.data());
    FissionConvShape g;
    g.C = 2; g.H = g.W = 4; g.kh = g.kw = 3; g.OH = g.OW = 2;
    const std::vector<int64_t> kept{0, 1};
    EXPECT_THROW(fission_conv(p, g, x.data(), 1.0f, 0.0f, c.data(), 4, FissionMode::fission,
                              &kept),
                 Error);
    g.kh = g.kw = 1; g.OH = g.OW = 4;
    EXPECT_THROW(fission_conv(p, g, x.data(), 1.0f, 0.0f, c.data(), 16), Error);
  }
}

// Native bf16 with tap-pair weights (FissionPackedA::conv_tap_pairs, an image's first layer):
// each K pair is taps (i, 2jp) and (i, 2jp + 1) of one channel, B read from a copy of the image
// pairing each element with its right neighbour (or, several images of short rows, K-pair
// panels). Odd kw (a zero pad tap, reading the element past the last tap), kw = 1 and 2,
// strides below, at and above kw, padding, several images, 1 and 2 threads, the output pass;
// the same checks as the channel pairs. A dilated geometry is refused.
TEST_F(FissionTest, ConvTapPairsMatchNaiveOnBf16Operands) {
  //                      M   C   H   W kh kw sh sw pt pb pl pr dh dw images
  const std::vector<ConvCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},          // kw = 1: one pair, high tap pad
      {33, 3, 27, 27, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1},     // conv1-like: 11x11, stride 4
      {20, 1, 12, 12, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 2},       // LeNet-like, C = 1, 2 images
      {17, 3, 15, 15, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1},       // ResNet-like 7x7 s2, padded
      {40, 3, 11, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},       // 3x3, stride 1, padded
      {9, 2, 9, 10, 2, 4, 3, 5, 0, 1, 2, 1, 2, 1, 1},         // stride 5 > kw, even kw, dh 2
      {24, 3, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3},         // short rows, 3 images: panels
  };
  check_pair_convs(true, cases, 301);
  if (HasFatalFailure()) return;
  set_active_isa(Isa::avx512_bf16);
  if (active_isa() == Isa::avx512_bf16) {   // dilation 2 along the row: refused, named
    std::vector<float> w(4 * 9, 0.5f), x(36), c(4 * 4);
    const FissionPackedA p = FissionPackedA::conv_tap_pairs(Format::bf16, Rounding::nearest_even,
                                                            4, 1, 3, 3, w.data());
    FissionConvShape g;
    g.C = 1; g.H = g.W = 6; g.kh = g.kw = 3; g.dw = 2; g.OH = 4; g.OW = 2;
    try {
      fission_conv(p, g, x.data(), 1.0f, 0.0f, c.data(), 8);
      ADD_FAILURE() << "a dilated tap-pair conv was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tap-pair"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("dilation 1"), std::string::npos) << e.what();
    }
  }
}


// The weights-broadcast bf16 GEMM (gemm/sbgemm_pairs.h): against the naive sum of the bf16-rounded
// operands on odd sizes (odd K: a zero half in the last pair; M past a 12-row strip; N past a
// 32-column panel, several panels), and, where the fission tile runs >= 3 columns per tile (N a
// multiple of 32), bit for bit the native bf16 fission GEMM (the same products in the same order).
TEST_F(FissionTest, Bf16RowStripsMatchNaiveAndTheFissionTiles) {
  if (detected_isa() < Isa::avx512_bf16) GTEST_SKIP() << "needs avx512_bf16";
  set_active_isa(Isa::avx512_bf16);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  struct Size { int64_t M, K, N; };
  const Size sizes[] = {{1, 1, 1},     {7, 17, 32},    {13, 255, 33}, {25, 2, 64},
                        {100, 33, 70}, {12, 64, 31},   {37, 1000, 96},
                        {5, 9, 288},   {3, 40, 545}};   // 9 and 18 panels: groups of 8
  for (const Rounding r : {Rounding::nearest_even, Rounding::truncate})
    for (int threads : {1, 2})
      for (const Size& z : sizes) {
        omp_set_num_threads(threads);
        std::vector<float> W(z.M * z.K), X(z.N * (z.K + 3));   // X rows K + 3 apart
        for (auto& v : W) v = u(gen);
        for (auto& v : X) v = u(gen);
        const int64_t ldx = z.K + 3;
        const gemm::Bf16RowStrips s(W.data(), z.M, z.K, r);
        std::vector<float> yt(z.M * z.N, 1234.0f);
        gemm::bf16_row_strips_gemm(s, z.N, X.data(), ldx, yt.data());
        const std::string what = "M=" + std::to_string(z.M) + " K=" + std::to_string(z.K) +
                                 " N=" + std::to_string(z.N) + " threads " +
                                 std::to_string(threads) +
                                 (r == Rounding::truncate ? " truncate" : " nearest");
        for (int64_t i = 0; i < z.M; ++i)
          for (int64_t j = 0; j < z.N; ++j) {
            double acc = 0, mag = 0;
            for (int64_t k = 0; k < z.K; ++k) {
              const double t = static_cast<double>(bf16_to_float(bf16_from_float(W[i * z.K + k], r))) *
                               bf16_to_float(bf16_from_float(X[j * ldx + k]));
              acc += t;
              mag += std::fabs(t);
            }
            ASSERT_NEAR(yt[i * z.N + j], acc, 1e-5 * (1 + mag)) << what << " at " << i << "," << j;
          }
        if (z.N % 32 != 0) continue;
        const FissionPackedA pa(Format::bf16, r, false, z.M, z.K, W.data(), z.K);
        ASSERT_TRUE(pa.native_bf16());
        std::vector<float> ref(z.M * z.N);
        fission_gemm(pa, true, z.N, 1.0f, X.data(), ldx, 0.0f, ref.data(), z.N);
        for (int64_t i = 0; i < z.M * z.N; ++i)
          ASSERT_EQ(yt[i], ref[i]) << what << ": against the fission tiles at " << i;
      }
}

}  // namespace
}  // namespace deftnn
