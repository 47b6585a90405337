// Max pooling's vectorised horizontal pass (src/ops/pool_rows.h) against the portable
// reference, bit for bit (NaN, -0 / +0 ties included), on odd lengths; and the maxpool layer's
// output on every ISA path this CPU has equal to the portable path's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "deftnn/layer.h"
#include "ops/lrn_rows.h"
#include "ops/pool_rows.h"
#include "ops/transpose_rows.h"
#include "test_util.h"

namespace deftnn {
namespace {

uint32_t bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

TEST(PoolRows, K3S2Avx512EqualsReferenceBitForBit) {
  if (detected_isa() < Isa::avx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  Rng rng(5);
  for (int64_t n : {1, 2, 7, 15, 16, 17, 31, 32, 33, 255}) {
    // Exactly 2n + 1 floats, in a vector of that size (ASan / a page end would catch overruns).
    std::vector<float> t(static_cast<size_t>(2 * n + 1));
    for (size_t i = 0; i < t.size(); ++i) {
      const uint64_t r = rng.below(10);
      t[i] = r == 0   ? std::numeric_limits<float>::quiet_NaN()
             : r == 1 ? -0.0f
             : r == 2 ? 0.0f
                      : static_cast<float>(rng.normal());
    }
    std::vector<float> want(static_cast<size_t>(n) + 1, 7.0f), got = want;
    ops::max_row__portable(t.data(), n, 3, 2, want.data());
    ops::max_row_k3s2__avx512(t.data(), n, got.data());
    for (int64_t i = 0; i <= n; ++i)
      ASSERT_EQ(bits(got[i]), bits(want[i])) << "n=" << n << " i=" << i;   // [n] untouched
  }
}

// The fused 3-row kernel equals the two passes of the reference (column maxima, then
// max_row__portable), bit for bit with NaN and signed zeros, with the columns outside [w0, w1)
// as -inf; it reads nothing outside [w0, w1) (rows held in vectors of exactly that size).
TEST(PoolRows, Rows3K3S2EqualsTwoPassReferenceBitForBit) {
  Rng rng(6);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 2, 7, 13, 15, 16, 17, 27, 31, 32, 33, 55, 255})
    for (int64_t pl : {0, 1})
      for (int64_t clip : {0, 1}) {   // ceil mode: the last window one column past the edge
        const int64_t W = 2 * n + 1 - pl - clip;
        if (W < 1) continue;
        std::vector<std::vector<float>> r(3, std::vector<float>(static_cast<size_t>(W)));
        for (auto& row : r)
          for (float& v : row) {
            const uint64_t u = rng.below(10);
            v = u == 0   ? std::numeric_limits<float>::quiet_NaN()
                : u == 1 ? -0.0f
                : u == 2 ? 0.0f
                         : static_cast<float>(rng.normal());
          }
        std::vector<float> t(static_cast<size_t>(2 * n + 1), ninf);
        for (int64_t w = 0; w < W; ++w)
          t[w + pl] = std::max(std::max(r[0][w], r[1][w]), r[2][w]);
        std::vector<float> want(static_cast<size_t>(n) + 1, 7.0f);
        ops::max_row__portable(t.data(), n, 3, 2, want.data());
        const std::string what = "n=" + std::to_string(n) + " pl=" + std::to_string(pl) +
                                 " clip=" + std::to_string(clip);
        for (bool avx : {false, true}) {
          if (avx && detected_isa() < Isa::avx512) continue;
          std::vector<float> got(want.size(), 7.0f);
          auto fn = avx ? ops::max_rows3_k3s2__avx512 : ops::max_rows3_k3s2__portable;
          fn(r[0].data() - pl, r[1].data() - pl, r[2].data() - pl, n, pl, pl + W, got.data());
          for (int64_t i = 0; i <= n; ++i)   // [n] untouched
            ASSERT_EQ(bits(got[i]), bits(want[i])) << what << (avx ? " avx512" : " portable")
                                                  << " i=" << i;
        }
      }
}

// The 2x2 stride-2 kernel against the layer's scalar formula, bit for bit (NaN, -0 / +0
// ties), on odd lengths; rows held in vectors of exactly 2n floats (reads stay inside).
TEST(PoolRows, Rows2K2S2EqualsScalarFormulaBitForBit) {
  Rng rng(7);
  for (int64_t n : {1, 2, 7, 15, 16, 17, 31, 32, 33, 112, 255}) {
    std::vector<std::vector<float>> r(2, std::vector<float>(static_cast<size_t>(2 * n)));
    for (auto& row : r)
      for (float& v : row) {
        const uint64_t u = rng.below(10);
        v = u == 0 ? std::numeric_limits<float>::quiet_NaN() : u == 1 ? -0.0f : u == 2 ? 0.0f
                                                                 : static_cast<float>(rng.normal());
      }
    std::vector<float> want(static_cast<size_t>(n) + 1, 7.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float a = r[0][2 * i], b = r[0][2 * i + 1], c = r[1][2 * i], d = r[1][2 * i + 1];
      want[i] = std::max(std::max(a, b), std::max(c, d));
    }
    std::vector<float> got = std::vector<float>(static_cast<size_t>(n) + 1, 7.0f);
    ops::max_rows2_k2s2__portable(r[0].data(), r[1].data(), n, got.data());
    for (int64_t i = 0; i <= n; ++i) ASSERT_EQ(bits(got[i]), bits(want[i])) << "n=" << n << " i=" << i;
    if (detected_isa() < Isa::avx512) continue;
    std::fill(got.begin(), got.end(), 7.0f);
    ops::max_rows2_k2s2__avx512(r[0].data(), r[1].data(), n, got.data());
    for (int64_t i = 0; i <= n; ++i)   // [n] untouched
      ASSERT_EQ(bits(got[i]), bits(want[i])) << "avx512 n=" << n << " i=" << i;
  }
}

// A 2x2 stride-2 maxpool in inference (the row kernels) equals the same layer in training (the
// scalar loop that also records the argmax), on every ISA path, odd sizes, padding and ceil
// mode's extra window included.
TEST(PoolRows, Maxpool2x2InferenceEqualsTrainingEveryIsa) {
  test::IsaGuard guard;
  // Even planes under 64 wide (one run of row pairs: LeNet's 24x24 and 8x8) and wider ones.
  for (const Shape& s : {Shape{1, 3, 17, 17}, Shape{2, 5, 8, 255}, Shape{1, 1, 2, 2},
                         Shape{1, 2, 56, 56}, Shape{1, 1, 3, 65}, Shape{3, 7, 24, 24},
                         Shape{5, 3, 8, 8}, Shape{2, 3, 6, 62}, Shape{1, 2, 64, 64}}) {
    const Tensor x = test::random_tensor(s, 11);
    for (int64_t pad : {0, 1}) {
      Attrs a;
      a.set("kernel", 2).set("stride", 2).set("pad", pad);
      for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) {
        set_active_isa(static_cast<Isa>(i));
        auto l = make_layer("maxpool", a);
        l->infer({s});
        Tensor want, got;
        RunContext train;
        train.training = true;
        l->forward({&x}, want, train);
        l->forward({&x}, got, RunContext{});
        ASSERT_EQ(got.shape(), want.shape());
        for (int64_t k = 0; k < got.numel(); ++k)
          ASSERT_EQ(bits(got[k]), bits(want[k])) << shape_str(s) << " pad " << pad << " isa "
                                                 << isa_name(static_cast<Isa>(i)) << " at " << k;
      }
    }
  }
}

TEST(PoolRows, MaxpoolEveryIsaEqualsPortable) {
  test::IsaGuard guard;
  for (const Shape& s : {Shape{1, 3, 17, 17}, Shape{2, 5, 7, 255}, Shape{1, 1, 3, 3},
                         Shape{1, 2, 55, 55}}) {
    const Tensor x = test::random_tensor(s, 9);
    for (int64_t pad : {0, 1}) {
      Attrs a;
      a.set("kernel", 3).set("stride", 2).set("pad", pad);
      auto ref_layer = make_layer("maxpool", a);
      ref_layer->infer({s});
      set_active_isa(Isa::portable);
      Tensor want;
      ref_layer->forward({&x}, want, RunContext{});
      for (int i = 1; i <= static_cast<int>(detected_isa()); ++i) {
        set_active_isa(static_cast<Isa>(i));
        auto l = make_layer("maxpool", a);
        l->infer({s});
        Tensor got;
        l->forward({&x}, got, RunContext{});
        ASSERT_EQ(got.shape(), want.shape());
        for (int64_t k = 0; k < got.numel(); ++k)
          ASSERT_EQ(bits(got[k]), bits(want[k])) << shape_str(s) << " pad " << pad << " isa "
                                                 << isa_name(static_cast<Isa>(i)) << " at " << k;
      }
    }
  }
}

}  // namespace
}  // namespace deftnn

// ---------------------------------------------------------------------------------------------
// LRN's one-pass inference kernel (beta = 0.75) against the double-precision formula, on odd
// channel counts and widths (vector tails), every window size parity, portable and AVX-512;
// and the layer in inference (the kernel) against the layer in training (the two-pass path
// that keeps the scale for backward).
namespace deftnn {
namespace {

TEST(LrnRows, B075MatchesFormulaEveryIsa) {
  Rng rng(14);
  for (int64_t C : {1, 3, 17, 96})
    for (int64_t S : {1, 15, 64, 65, 729})
      for (int64_t size : {1, 4, 5}) {
        const int64_t pre = (size - 1) / 2, post = size - 1 - pre;
        const float a = 0.3f / static_cast<float>(size), k = 1.5f;
        std::vector<float> x(static_cast<size_t>(C * S));
        for (float& v : x) v = static_cast<float>(rng.normal()) * 2.0f;
        std::vector<double> want(x.size());
        for (int64_t c = 0; c < C; ++c)
          for (int64_t s = 0; s < S; ++s) {
            double sum = 0;
            for (int64_t cc = std::max<int64_t>(c - pre, 0); cc <= std::min(c + post, C - 1); ++cc)
              sum += static_cast<double>(x[cc * S + s]) * x[cc * S + s];
            want[c * S + s] = x[c * S + s] * std::pow(k + static_cast<double>(a) * sum, -0.75);
          }
        for (bool avx : {false, true}) {
          if (avx && detected_isa() < Isa::avx512) continue;
          std::vector<float> y(x.size(), 7.0f);
          // Two calls over [0, S / 3) and [S / 3, S), as the layer's position blocks.
          auto fn = avx ? ops::lrn_b075__avx512 : ops::lrn_b075__portable;
          fn(x.data(), C, S, pre, post, a, k, 0, S / 3, y.data());
          fn(x.data(), C, S, pre, post, a, k, S / 3, S, y.data());
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_NEAR(y[i], want[i], 2e-6 * std::max(1.0, std::fabs(want[i])))
                << (avx ? "avx512" : "portable") << " C=" << C << " S=" << S << " size=" << size
                << " at " << i;
        }
      }
}

TEST(LrnRows, LayerInferenceEqualsTrainingPath) {
  Rng rng(15);
  auto l = make_layer("lrn", Attrs().set("size", 5).set("alpha", 1e-2).set("beta", 0.75).set("k", 1.0));
  Tensor x({2, 96, 27, 27});
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(rng.normal()) * 3.0f;
  Tensor yi, yt;
  l->infer({x.shape()});
  l->forward({&x}, yt, RunContext{true, nullptr});
  l->forward({&x}, yi, RunContext{false, nullptr});
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_NEAR(yi[i], yt[i], 2e-6 * std::max(1.0f, std::fabs(yt[i]))) << i;
}


// fc's transposing store (ops/transpose_rows.h): the AVX-512 16 x 16 register transpose against
// the portable loop, bit for bit, on odd O and N (block edges), sub-ranges of features, with and
// without bias and the fused ReLU; values include -0, +0, NaN and infinities. And the portable
// loop against the formula itself.
TEST(TransposeRows, Avx512EqualsPortableBitForBit) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t O : {1, 7, 16, 17, 33, 255})
    for (int64_t N : {1, 2, 15, 16, 31, 40}) {
      std::vector<float> yt(O * N), b(O);
      uint32_t s = static_cast<uint32_t>(O * 131 + N);
      for (auto& v : yt) {
        s = s * 1664525u + 1013904223u;
        const uint32_t r = s >> 24;
        v = r < 8 ? -0.0f : r < 12 ? 0.0f : r < 14 ? nan : r < 16 ? -inf
                  : (static_cast<float>(s >> 9 & 0xFFFF) - 32768.0f) / 1024.0f;
      }
      for (int64_t o = 0; o < O; ++o) b[o] = o % 5 == 0 ? -0.0f : static_cast<float>(o % 7) - 3.0f;
      for (bool bias : {false, true})
        for (bool relu : {false, true}) {
          const int64_t o0 = O > 2 ? 1 : 0, o1 = O;   // a sub-range, as a thread's share
          std::vector<float> want(N * O, 7.0f), got(N * O, 7.0f);
          ops::transpose_bias__portable(yt.data(), O, N, bias ? b.data() : nullptr, relu, want.data(), o0, o1);
          for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < O; ++o) {
              const float v = o < o0 ? 7.0f : bias ? yt[o * N + n] + b[o] : yt[o * N + n];
              const float e = o >= o0 && relu ? (v > 0.0f ? v : 0.0f * v) : v;
              ASSERT_EQ(bits(want[n * O + o]), bits(e)) << "portable O=" << O << " N=" << N;
            }
          if (detected_isa() < Isa::avx512) continue;
          ops::transpose_bias__avx512(yt.data(), O, N, bias ? b.data() : nullptr, relu, got.data(), o0, o1);
          for (int64_t i = 0; i < N * O; ++i)
            ASSERT_EQ(bits(got[i]), bits(want[i]))
                << "O=" << O << " N=" << N << " bias " << bias << " relu " << relu << " at " << i;
        }
    }
}

}  // namespace
}  // namespace deftnn
