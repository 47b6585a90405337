// Winograd F(2x2, 3x3) convolution (src/gemm/winograd.h) against a naive double-precision
// convolution: odd channel counts and planes (1, 2, 3, 7, 17 ...), asymmetric padding, several
// images, bias / residual / ReLU, 1 and 2 threads, on every ISA path (the portable transforms on
// portable and AVX2, the vectorised ones on AVX-512); and the Conv layer's use of it.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "deftnn/model.h"
#include "gemm/winograd.h"
#include "test_util.h"

using namespace deftnn;

namespace {

using test::IsaGuard;

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

struct Case {
  int64_t images, C, O, H, W, pt, pl, OH, OW;
};

std::vector<float> randoms(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (float& f : v) f = static_cast<float>(r.normal());
  return v;
}

// Runs the case with the given epilogue parts and compares with the naive sum: each output within
// 1e-5 of the sum of the magnitudes of its terms (Winograd's transforms add and subtract up to
// 16 products per output; fp32 rounding stays far below that bound, a wrong index far above).
void check_case(const Case& c, bool bias, bool res, bool relu, const std::string& where) {
  const std::vector<float> w = randoms(static_cast<size_t>(c.O * c.C * 9), 1);
  const std::vector<float> x = randoms(static_cast<size_t>(c.images * c.C * c.H * c.W), 2);
  const std::vector<float> bv = randoms(static_cast<size_t>(c.O), 3);
  const int64_t plane = c.OH * c.OW, ystride = c.O * plane + 5;   // images apart, with a gap
  const std::vector<float> rv = randoms(static_cast<size_t>(c.images * c.O * plane), 4);
  std::vector<float> y(static_cast<size_t>(c.images * ystride), 1234.0f);
  const gemm::WinogradWeights ww(active_isa(), w.data(), c.O, c.C);
  gemm::winograd_conv3x3(ww, {c.images, c.H, c.W, c.pt, c.pl, c.OH, c.OW, c.C * c.H * c.W, ystride},
                         x.data(), y.data(),
                         {bias ? bv.data() : nullptr, res ? rv.data() : nullptr, c.O * plane, relu});
  for (int64_t n = 0; n < c.images; ++n) {
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t i = 0; i < c.OH; ++i)
        for (int64_t j = 0; j < c.OW; ++j) {
          double acc = 0, mag = 0;
          for (int64_t ci = 0; ci < c.C; ++ci)
            for (int u = 0; u < 3; ++u)
              for (int v = 0; v < 3; ++v) {
                const int64_t r = i + u - c.pt, q = j + v - c.pl;
                if (r < 0 || r >= c.H || q < 0 || q >= c.W) continue;
                const double t = static_cast<double>(w[(o * c.C + ci) * 9 + u * 3 + v]) *
                                 x[((n * c.C + ci) * c.H + r) * c.W + q];
                acc += t;
                mag += std::fabs(t);
              }
          if (bias) acc += bv[o];
          if (res) acc += rv[(n * c.O + o) * plane + i * c.OW + j];
          if (relu) acc = acc > 0 ? acc : 0;
          const float got = y[n * ystride + o * plane + i * c.OW + j];
          ASSERT_NEAR(got, acc, 1e-5 * (1 + mag))
              << where << ": image " << n << " channel " << o << " at (" << i << ", " << j << ")";
        }
    for (int64_t k = c.O * plane; k < ystride; ++k)   // the gap between images is not written
      ASSERT_EQ(y[n * ystride + k], 1234.0f) << where << ": wrote past image " << n;
  }
}

TEST(Winograd, MatchesNaiveConvOnOddShapesEveryIsaAndThreadCount) {
  IsaGuard guard;
  const int saved = omp_get_max_threads();
  // images, C, O, H, W, pad top, pad left, OH, OW ("same" padding unless noted)
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 1},      {1, 7, 5, 7, 7, 1, 1, 7, 7},
      {1, 3, 13, 2, 3, 1, 1, 2, 3},     {2, 17, 33, 9, 17, 1, 1, 9, 17},
      {1, 16, 12, 5, 5, 0, 0, 3, 3},    // valid conv, no padding
      {1, 9, 7, 11, 6, 2, 1, 13, 6},    // asymmetric: 2 on top, 1 left, 2 at the bottom
      {3, 5, 25, 17, 3, 1, 1, 17, 3},   // tile rows of 2 tiles, several images per block
      {1, 32, 40, 31, 40, 1, 1, 31, 40}, // rows of 20 tiles: runs cut at 16 and at panels
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      for (size_t k = 0; k < cases.size(); ++k) {
        const std::string where = std::string(isa_name(isa)) + ", " + std::to_string(threads) +
                                  " thread(s), case " + std::to_string(k);
        check_case(cases[k], k % 2 == 0, k % 3 == 0, k % 2 == 1, where);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(Winograd, EpilogueCombinations) {
  IsaGuard guard;
  const Case c{2, 6, 14, 7, 9, 1, 1, 7, 9};
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int e = 0; e < 8; ++e)
      check_case(c, e & 1, e & 2, e & 4,
                 std::string(isa_name(isa)) + ", epilogue " + std::to_string(e));
  }
}

// ---- bf16 variant (avx512_bf16 only) ------------------------------------------------------

// bf16 rounding as the transforms and the weights are rounded (nearest even; the instruction's
// flush of subnormals, as formats.h's bf16 codec does it).
double bf(double v) { return bf16_to_float(bf16_from_float(static_cast<float>(v))); }

// The bf16 Winograd conv against a scalar reference of its arithmetic written out here: U and V
// of every tile computed in double from the fp32 weights and input, each rounded to bf16, their
// products summed in double, then A^T M A and the epilogue. The kernels sum the same bf16
// products in fp32 (exact products, another order): each output within 1e-5 of the sum of the
// magnitudes of the terms. A wrong pair, lane or panel index is far outside that.
void check_bf16_case(const Case& c, bool bias, bool res, bool relu, const std::string& where) {
  const std::vector<float> w = randoms(static_cast<size_t>(c.O * c.C * 9), 11);
  const std::vector<float> x = randoms(static_cast<size_t>(c.images * c.C * c.H * c.W), 12);
  const std::vector<float> bv = randoms(static_cast<size_t>(c.O), 13);
  const int64_t plane = c.OH * c.OW, ystride = c.O * plane + 3;
  const std::vector<float> rv = randoms(static_cast<size_t>(c.images * c.O * plane), 14);
  std::vector<float> y(static_cast<size_t>(c.images * ystride), 1234.0f);
  const gemm::WinogradWeights ww(Isa::avx512_bf16, w.data(), c.O, c.C, true);
  ASSERT_TRUE(ww.bf16());
  gemm::winograd_conv3x3(ww, {c.images, c.H, c.W, c.pt, c.pl, c.OH, c.OW, c.C * c.H * c.W, ystride},
                         x.data(), y.data(),
                         {bias ? bv.data() : nullptr, res ? rv.data() : nullptr, c.O * plane, relu});
  // The transforms in fp32, in the kernels' order of operations (G g, then times G^T; d B, then
  // B^T times it): the values are then rounded to bf16, and a 1-ulp fp32 difference before the
  // rounding could move a value by a bf16 ulp.
  // U[o][c][4][4] = bf(G g G^T)
  std::vector<double> U(static_cast<size_t>(c.O * c.C * 16));
  for (int64_t o = 0; o < c.O; ++o)
    for (int64_t ci = 0; ci < c.C; ++ci) {
      const float* g = &w[static_cast<size_t>((o * c.C + ci) * 9)];
      float t[4][3];
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[j];
        t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        t[3][j] = g[6 + j];
      }
      for (int a = 0; a < 4; ++a) {
        const float r[4] = {t[a][0], 0.5f * (t[a][0] + t[a][1] + t[a][2]),
                            0.5f * (t[a][0] - t[a][1] + t[a][2]), t[a][2]};
        for (int b = 0; b < 4; ++b) U[((o * c.C + ci) * 16) + a * 4 + b] = bf(r[b]);
      }
    }
  const int64_t th = (c.OH + 1) / 2, tw = (c.OW + 1) / 2;
  for (int64_t n = 0; n < c.images; ++n)
    for (int64_t ty = 0; ty < th; ++ty)
      for (int64_t tx = 0; tx < tw; ++tx) {
        std::vector<double> V(static_cast<size_t>(c.C * 16));
        for (int64_t ci = 0; ci < c.C; ++ci) {
          float d[4][4];
          for (int k = 0; k < 4; ++k)
            for (int q = 0; q < 4; ++q) {
              const int64_t r = 2 * ty - c.pt + k, col = 2 * tx - c.pl + q;
              d[k][q] = r >= 0 && r < c.H && col >= 0 && col < c.W
                            ? x[static_cast<size_t>(((n * c.C + ci) * c.H + r) * c.W + col)]
                            : 0.0f;
            }
          float t[4][4];   // d B, row k
          for (int k = 0; k < 4; ++k) {
            t[k][0] = d[k][0] - d[k][2];
            t[k][1] = d[k][1] + d[k][2];
            t[k][2] = d[k][2] - d[k][1];
            t[k][3] = d[k][1] - d[k][3];
          }
          for (int q = 0; q < 4; ++q) {   // B^T (d B)
            V[ci * 16 + 0 + q] = bf(t[0][q] - t[2][q]);
            V[ci * 16 + 4 + q] = bf(t[1][q] + t[2][q]);
            V[ci * 16 + 8 + q] = bf(t[2][q] - t[1][q]);
            V[ci * 16 + 12 + q] = bf(t[1][q] - t[3][q]);
          }
        }
        for (int64_t o = 0; o < c.O; ++o) {
          double m[16] = {}, mag[16] = {};
          for (int64_t ci = 0; ci < c.C; ++ci)
            for (int e = 0; e < 16; ++e) {
              const double t = U[(o * c.C + ci) * 16 + e] * V[ci * 16 + e];
              m[e] += t;
              mag[e] += std::fabs(t);
            }
          const double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
          for (int iy = 0; iy < 2; ++iy)
            for (int ix = 0; ix < 2; ++ix) {
              const int64_t i = 2 * ty + iy, j = 2 * tx + ix;
              if (i >= c.OH || j >= c.OW) continue;
              double acc = 0, bound = 0;
              for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b) {
                  acc += AT[iy][a] * m[a * 4 + b] * AT[ix][b];
                  bound += std::fabs(AT[iy][a] * AT[ix][b]) * mag[a * 4 + b];
                }
              if (bias) acc += bv[o];
              if (res) acc += rv[(n * c.O + o) * plane + i * c.OW + j];
              if (relu) acc = acc > 0 ? acc : 0;
              const float got = y[n * ystride + o * plane + i * c.OW + j];
              ASSERT_NEAR(got, acc, 1e-5 * (1 + bound))
                  << where << ": image " << n << " channel " << o << " at (" << i << ", " << j << ")";
            }
        }
      }
  for (int64_t n = 0; n < c.images; ++n)
    for (int64_t k = c.O * plane; k < ystride; ++k)
      ASSERT_EQ(y[n * ystride + k], 1234.0f) << where << ": wrote past image " << n;
}

TEST(Winograd, Bf16MatchesItsRoundedArithmeticOnOddShapes) {
  if (detected_isa() < Isa::avx512_bf16) GTEST_SKIP() << "needs avx512_bf16";
  IsaGuard guard;
  set_active_isa(Isa::avx512_bf16);
  const int saved = omp_get_max_threads();
  // Odd C (a zero high half in the last pair), O not a multiple of the 12-row strip, tile counts
  // not a multiple of the 32-column panel or of the 16-lane groups.
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 1},      {1, 7, 5, 7, 7, 1, 1, 7, 7},
      {2, 17, 33, 9, 17, 1, 1, 9, 17},  {1, 9, 7, 11, 6, 2, 1, 13, 6},
      {3, 5, 25, 17, 3, 1, 1, 17, 3},   {1, 32, 40, 31, 40, 1, 1, 31, 40},
      {1, 255, 13, 5, 5, 0, 0, 3, 3},
  };
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (size_t k = 0; k < cases.size(); ++k)
      check_bf16_case(cases[k], k % 2 == 0, k % 3 == 0, k % 2 == 1,
                      std::to_string(threads) + " thread(s), case " + std::to_string(k));
  }
  omp_set_num_threads(saved);
}

// Where the automatic policy runs the bf16 variant: the layers its thresholds were measured on.
TEST(Winograd, Bf16AutoPolicyFollowsTheMeasuredLayers) {
  const Isa z = Isa::avx512_bf16;
  EXPECT_TRUE(gemm::winograd_pays(z, 256, 384, 49, true));      // CaffeNet conv3, batch 1
  EXPECT_FALSE(gemm::winograd_pays(z, 192, 192, 49, true));     // its conv4 (per group), batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 192, 128, 1568, true));    // its conv5, batch 32
  EXPECT_FALSE(gemm::winograd_pays(z, 64, 64, 784, true));      // ResNet-18 layer1, batch 1
  EXPECT_FALSE(gemm::winograd_pays(z, 128, 128, 196, true));    // its layer2, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 128, 128, 3136, true));    // the same at batch 16
  EXPECT_TRUE(gemm::winograd_pays(z, 512, 512, 49, true));      // VGG-11's 14x14, batch 1
  EXPECT_FALSE(gemm::winograd_pays(z, 512, 512, 16, true));     // ResNet-18's 7x7, batch 1
  EXPECT_FALSE(gemm::winograd_pays(z, 64, 256, 49, true));      // SqueezeNet 13x13, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 64, 256, 784, true));      // the same at batch 16
  EXPECT_FALSE(gemm::winograd_pays(z, 16, 64, 784, true));      // its 55x55, batch 1
  // fp32 runs Winograd on layers the bf16 variant leaves to the direct kernels.
  EXPECT_TRUE(gemm::winograd_pays(z, 64, 64, 784));
}

TEST(Winograd, ReluKeepsNaN) {
  const std::vector<float> w(9, 0.0f);
  std::vector<float> x(16, 1.0f);
  x[5] = NAN;
  std::vector<float> y(16, 0.0f);
  const gemm::WinogradWeights ww(active_isa(), w.data(), 1, 1);
  gemm::winograd_conv3x3(ww, {1, 4, 4, 1, 1, 4, 4, 16, 16}, x.data(), y.data(),
                         {nullptr, nullptr, 0, true});
  EXPECT_TRUE(std::isnan(y[0]));   // 0 * NaN is NaN: ReLU as v > 0 ? v : 0 * v passes it on
}

TEST(Winograd, AutoPolicyFollowsTheMeasuredLayers) {
  // The layers each threshold of gemm::winograd_pays was measured on (README, winograd.cpp).
  const Isa z = Isa::avx512;
  EXPECT_TRUE(gemm::winograd_pays(z, 64, 64, 784));      // ResNet-18 layer1, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 256, 256, 49));     // its 14x14 layer3
  EXPECT_FALSE(gemm::winograd_pays(z, 512, 512, 16));    // its 7x7 layer4: weights from DRAM
  EXPECT_FALSE(gemm::winograd_pays(z, 48, 192, 49));     // SqueezeNet 13x13 expand, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 48, 192, 784));     // the same at batch 16
  EXPECT_TRUE(gemm::winograd_pays(z, 64, 256, 49));      // its 64-channel 13x13 ones, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 32, 128, 196));     // its 27x27 ones, batch 1
  EXPECT_FALSE(gemm::winograd_pays(z, 16, 64, 784));     // 55x55 expand, batch 1
  EXPECT_TRUE(gemm::winograd_pays(z, 16, 64, 12544));    // the same at batch 16
  EXPECT_FALSE(gemm::winograd_pays(z, 64, 8, 784));      // too few output channels
  EXPECT_FALSE(gemm::winograd_pays(Isa::avx2, 64, 64, 784));   // no vectorised transforms
}

TEST(Winograd, PolicyNames) {
  EXPECT_EQ(winograd_policy_from_name("auto"), WinogradPolicy::automatic);
  EXPECT_EQ(winograd_policy_from_name("off"), WinogradPolicy::off);
  EXPECT_EQ(winograd_policy_from_name("on"), WinogradPolicy::on);
  EXPECT_STREQ(winograd_policy_name(WinogradPolicy::off), "off");
  try {
    winograd_policy_from_name("fast");
    FAIL() << "no error for an unknown policy";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'fast'"), std::string::npos) << e.what();
  }
}

Attrs conv3(int out, int pad, int stride = 1, int groups = 1) {
  return Attrs().set("out_channels", out).set("kernel", 3).set("stride", stride).set("pad", pad)
      .set("groups", groups);
}

// The frozen model's output under a policy (the weights transformed afresh).
Tensor frozen_output(Model& m, const Tensor& x, WinogradPolicy p) {
  set_winograd_policy(p);
  m.freeze(false);
  m.freeze(true);
  Tensor y = m.forward(x).clone();
  m.freeze(false);
  return y;
}

// A frozen model with Winograd on gives the direct kernels' output within rounding, with the
// fused residual + ReLU, a grouped conv and the outputs written into a concat slice, on every
// ISA path.
TEST(Winograd, ConvLayerMatchesDirectInAFrozenModel) {
  IsaGuard isa_guard;
  test::WinogradPolicyGuard guard;
  Model m({20, 15, 13});
  int a = m.add("a", "conv", conv3(24, 1));
  int ar = m.add("a_relu", "relu", Attrs(), {a});
  int b = m.add("b", "conv", conv3(20, 1), {ar});
  int s = m.add("add", "add", Attrs(), {b, 0});
  int r = m.add("relu", "relu", Attrs(), {s});
  int e = m.add("e", "conv", conv3(8, 0), {r});      // valid padding, into the concat
  int f = m.add("f", "conv", conv3(8, 0, 1, 4), {r});   // 4 groups of 5 -> 2 channels
  m.add("cat", "concat", Attrs().set("axis", 1), {e, f});
  m.init_params(7);
  const Tensor x = test::random_tensor({2, 20, 15, 13}, 9);
  const int saved = omp_get_max_threads();
  for (Isa isa : supported_isas())
    for (int threads : {1, 2}) {   // 2: the groups one per thread; 1: one after the other
      set_active_isa(isa);
      omp_set_num_threads(threads);
      const Tensor direct = frozen_output(m, x, WinogradPolicy::off);
      const Tensor wino = frozen_output(m, x, WinogradPolicy::on);
      ASSERT_EQ(wino.shape(), direct.shape());
      double diff = 0;
      for (int64_t i = 0; i < wino.numel(); ++i) {
        ASSERT_NEAR(wino[i], direct[i], 1e-4 * (1 + std::fabs(direct[i])))
            << isa_name(isa) << ", " << threads << " thread(s), at " << i;
        diff = std::max(diff, static_cast<double>(std::fabs(wino[i] - direct[i])));
      }
      EXPECT_GT(diff, 0.0) << isa_name(isa) << ": identical to the direct kernels, so not run";
    }
  omp_set_num_threads(saved);
}

// A frozen conv in native bf16 (nearest-even weights) runs the bf16 variant where the policy
// picks Winograd: bit for bit winograd_conv3x3 on bf16 WinogradWeights of its fp32 weights, with
// its bias and ReLU fused; not the fp32 Winograd. Truncated weights keep the direct kernels
// (the same output whatever the policy).
TEST(Winograd, Bf16ConvLayerRunsTheBf16Variant) {
  if (detected_isa() < Isa::avx512_bf16) GTEST_SKIP() << "needs avx512_bf16";
  IsaGuard isa_guard;
  test::WinogradPolicyGuard guard;
  set_active_isa(Isa::avx512_bf16);
  const int64_t C = 19, O = 26, H = 11, W = 14;
  Model m({C, H, W});
  const int c = m.add("c", "conv", conv3(static_cast<int>(O), 1).set("format", "bf16"));
  m.add("r", "relu", Attrs(), {c});
  m.init_params(5);
  const Tensor x = test::random_tensor({2, C, H, W}, 6);
  const Tensor wino = frozen_output(m, x, WinogradPolicy::on);
  const Tensor direct = frozen_output(m, x, WinogradPolicy::off);
  Layer& conv = *m.nodes()[static_cast<size_t>(m.find("c"))].layer;
  const gemm::WinogradWeights ww(Isa::avx512_bf16, conv.param("weight")->value.data(), O, C, true);
  std::vector<float> want(static_cast<size_t>(2 * O * H * W));
  gemm::winograd_conv3x3(ww, {2, H, W, 1, 1, H, W, C * H * W, O * H * W}, x.data(), want.data(),
                         {conv.param("bias")->value.data(), nullptr, 0, true});
  const gemm::WinogradWeights w32(Isa::avx512_bf16, conv.param("weight")->value.data(), O, C);
  std::vector<float> f32(want.size());
  gemm::winograd_conv3x3(w32, {2, H, W, 1, 1, H, W, C * H * W, O * H * W}, x.data(), f32.data(),
                         {conv.param("bias")->value.data(), nullptr, 0, true});
  ASSERT_EQ(wino.numel(), static_cast<int64_t>(want.size()));
  bool differs_f32 = false, differs_direct = false;
  for (int64_t i = 0; i < wino.numel(); ++i) {
    ASSERT_EQ(wino[i], want[static_cast<size_t>(i)]) << "at " << i;
    differs_f32 |= wino[i] != f32[static_cast<size_t>(i)];
    differs_direct |= wino[i] != direct[i];
    ASSERT_NEAR(wino[i], direct[i], 0.03 * (1 + std::fabs(direct[i]))) << "against direct at " << i;
  }
  EXPECT_TRUE(differs_f32) << "the bf16 layer ran fp32 Winograd";
  EXPECT_TRUE(differs_direct) << "Winograd on gave the direct kernels' output";
  conv.set_attr("rounding", std::string("truncate"));
  const Tensor t_on = frozen_output(m, x, WinogradPolicy::on);
  const Tensor t_off = frozen_output(m, x, WinogradPolicy::off);
  for (int64_t i = 0; i < t_on.numel(); ++i) ASSERT_EQ(t_on[i], t_off[i]) << "truncated, at " << i;
}

// Layers Winograd does not cover (stride 2, 5x5, dilation) and training forwards run the direct
// kernels whatever the policy: bit for bit the same output.
TEST(Winograd, IneligibleLayersAndTrainingAreUnchanged) {
  IsaGuard isa_guard;
  test::WinogradPolicyGuard guard;
  const std::vector<Attrs> layers = {conv3(16, 1, 2),
                                     Attrs().set("out_channels", 16).set("kernel", 5).set("pad", 2),
                                     conv3(16, 2).set("dilation", 2)};
  const Tensor x = test::random_tensor({2, 20, 15, 13}, 9);
  for (size_t k = 0; k < layers.size(); ++k) {
    Model m({20, 15, 13});
    m.add("c", "conv", layers[k]);
    m.init_params(3);
    const Tensor off = frozen_output(m, x, WinogradPolicy::off);
    const Tensor on = frozen_output(m, x, WinogradPolicy::on);
    for (int64_t i = 0; i < on.numel(); ++i) ASSERT_EQ(on[i], off[i]) << "layer " << k << " at " << i;
  }
  Model m({20, 15, 13});
  m.add("c", "conv", conv3(16, 1));
  m.init_params(3);
  set_winograd_policy(WinogradPolicy::on);
  const Tensor t1 = m.forward(x, true).clone();
  set_winograd_policy(WinogradPolicy::off);
  const Tensor t2 = m.forward(x, true).clone();
  for (int64_t i = 0; i < t1.numel(); ++i) ASSERT_EQ(t1[i], t2[i]) << "training at " << i;
}

}  // namespace

#ifdef DEFTNN_CLI_PATH
namespace {

// The command takes the policy from --winograd or DEFTNN_WINOGRAD and refuses a bad one with a
// message naming it and a non-zero exit.
TEST(Winograd, CommandLinePolicy) {
  std::string out;
  EXPECT_EQ(test::run_cli("--winograd off info lenet", &out), 0) << out;
  EXPECT_NE(test::run_cli("--winograd fast info lenet", &out), 0);
  EXPECT_NE(out.find("fast"), std::string::npos) << out;
  const char* saved = std::getenv("DEFTNN_WINOGRAD");
  const std::string keep = saved ? saved : "";
  setenv("DEFTNN_WINOGRAD", "sometimes", 1);
  const int rc = test::run_cli("info lenet", &out);
  if (saved) setenv("DEFTNN_WINOGRAD", keep.c_str(), 1); else unsetenv("DEFTNN_WINOGRAD");
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("DEFTNN_WINOGRAD"), std::string::npos) << out;
  EXPECT_NE(out.find("'sometimes'"), std::string::npos) << out;
}

}  // namespace
#endif
