// Near-compute data fission in the layers (src/ops/conv.cpp, src/ops/fc.cpp with the `format`
// attribute; src/graph/precision.cpp): each format against the fp32 layer run on weights
// round-tripped through the scalar encoder/decoder (an independent path: no FissionPackedA),
// native bf16 against a reference that rounds the activations to bf16 too, f32 identical to no
// attribute, training ignoring the format, the packed-weight cache, set_model_format, and the
// CLI's eval --format/--formats and bench --formats.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "deftnn/io.h"
#include "deftnn/layer.h"
#include "deftnn/model.h"
#include "deftnn/precision.h"
#include "deftnn/rng.h"
#include "deftnn/tensor.h"
#include "deftnn/zoo.h"
#include "gemm/winograd.h"
#include "test_util.h"

using namespace deftnn;

namespace {

Tensor rand_tensor(const Shape& s, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform(lo, hi);
  return t;
}

// Forward without infer() (infer drops the packed weights, as Model::add does).
Tensor fwd(Layer& l, const Tensor& x, bool training = false) {
  Tensor out;
  l.forward({&x}, out, RunContext{training, nullptr});
  return out;
}

Tensor run(Layer& l, const Tensor& x, bool training = false) {
  l.infer({x.shape()});
  Tensor out;
  l.forward({&x}, out, RunContext{training, nullptr});
  return out;
}

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

// The weight [groups * rows, K] as the kernels see it, computed with the scalar reference codecs
// only. Deft-16Q pairs rows 2d and 2d+1 of a group (same k) in one word: the odd row widens with
// the even row's code in its low mantissa (formats.h); an odd last row pairs with nothing.
std::vector<float> round_trip(Format f, Rounding r, const float* w, int64_t groups, int64_t rows,
                              int64_t K) {
  const FormatInfo& fi = format_info(f);
  std::vector<float> out(static_cast<size_t>(groups * rows * K));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t at = (g * rows + i) * K + k;
        if (f == Format::deft16q) {
          if (i % 2 == 0) {
            out[at] = deft16_to_float(deft16_from_float(w[at], r));
          } else {
            const uint16_t lo = deft16_from_float(w[at - K], r), hi = deft16_from_float(w[at], r);
            float l, h;
            deft16q_decode_pair(deft16q_pack(lo, hi), &l, &h);
            out[at] = h;
          }
        } else {
          out[at] = fi.to_float(fi.from_float(w[at], r, 0));
        }
      }
  return out;
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  int bad = 0;
  for (int64_t i = 0; i < got.numel() && bad < 5; ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= atol + rtol * std::fabs(static_cast<double>(want[i])))) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << want[i];
      ++bad;
    }
  }
}

void expect_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(a[i], b[i]) << what << " element " << i;
}

struct Case {
  std::string type;
  Attrs attrs;
  Shape input;
  int64_t groups;   // weight row blocks (conv groups; 1 for fc)
};

// conv: odd Og (3) with 2 groups, padding, stride; batch 1 (GEMM into the output) and 3 (images
// side by side); at least 128 output columns a call (a software-widened format's weights
// widened once, the fp32 kernels run), dense and eliminated; fc: odd O at batch 1 (Y^T == Y) and 5 (transposed), with and without elimination.
std::vector<Case> cases() {
  std::vector<Case> c;
  Attrs conv;
  conv.set("out_channels", 6).set("kernel", std::vector<int64_t>{3, 3}).set("pad", 1)
      .set("stride", 1).set("groups", 2);
  c.push_back({"conv", conv, {1, 4, 7, 6}, 2});
  c.push_back({"conv", conv, {3, 4, 5, 5}, 2});
  c.push_back({"conv", conv, {2, 4, 9, 9}, 2});   // 162 columns: weights widened once
  Attrs conv2;
  conv2.set("out_channels", 37).set("kernel", std::vector<int64_t>{5, 5}).set("stride", 2);
  c.push_back({"conv", conv2, {2, 3, 11, 11}, 1});
  Attrs sve = conv2;
  std::vector<int64_t> kept;
  for (int64_t k = 74; k >= 0; k -= 2) kept.push_back(k);   // 38 of 75, scrambled order
  sve.set("retained", kept);
  c.push_back({"conv", sve, {2, 3, 11, 11}, 1});
  c.push_back({"conv", sve, {2, 3, 23, 23}, 1});   // 200 columns, widened once
  Attrs fc;
  fc.set("out_features", 37);
  c.push_back({"fc", fc, {1, 3, 4, 5}, 1});
  c.push_back({"fc", fc, {5, 60}, 1});
  Attrs fcs = fc;
  fcs.set("retained", std::vector<int64_t>{59, 0, 7, 33, 12, 41, 2, 50, 18, 25, 3});
  c.push_back({"fc", fcs, {1, 60}, 1});
  c.push_back({"fc", fcs, {4, 60}, 1});
  return c;
}

std::string label(const Case& c, Format f, FissionMode m, Isa isa) {
  return c.type + " " + c.attrs.str() + " input " + shape_str(c.input) + " format " +
         format_name(f) + " mode " + fission_mode_name(m) + " isa " + isa_name(isa);
}

class FissionLayer : public ::testing::Test {
 protected:
  void SetUp() override { isa_ = active_isa(); }
  void TearDown() override { set_active_isa(isa_); }
  Isa isa_ = Isa::portable;
};

// Builds the layer with `fmt` attrs and its fp32 twin, same random parameters.
struct Pair {
  std::unique_ptr<Layer> fis, ref;
};
Pair make_pair(const Case& c, Attrs fmt_attrs, uint64_t seed) {
  Pair p;
  Attrs a = c.attrs;
  for (const auto& [k, v] : fmt_attrs.items()) a.set_value(k, v);
  p.fis = make_layer(c.type, a);
  p.ref = make_layer(c.type, c.attrs);
  p.fis->infer({c.input});
  p.ref->infer({c.input});
  Rng rng(seed);
  for (size_t i = 0; i < p.fis->params().size(); ++i) {
    Tensor& t = p.fis->params()[i].value;
    for (int64_t j = 0; j < t.numel(); ++j) t[j] = rng.uniform(-0.5f, 0.5f);
    p.ref->params()[i].value = t.clone();   // Tensor copies share storage
  }
  return p;
}

// x with every value rounded to bf16 (nearest even, subnormals flushed): the activations the
// bf16 kernels multiply by.
Tensor bf16_rounded(const Tensor& x) {
  Tensor xq = x.clone();
  for (int64_t i = 0; i < xq.numel(); ++i) xq[i] = bf16_to_float(bf16_from_float(x[i]));
  return xq;
}

void round_trip_weight(Layer& ref, const Case& c, Format f, Rounding r) {
  Tensor& w = ref.param("weight")->value;
  const int64_t rows = w.dim(0) / c.groups, K = w.numel() / w.dim(0);
  const std::vector<float> q = round_trip(f, r, w.data(), c.groups, rows, K);
  for (int64_t i = 0; i < w.numel(); ++i) w[i] = q[static_cast<size_t>(i)];
}

}  // namespace

TEST_F(FissionLayer, EachFormatEqualsFp32OnRoundTrippedWeights) {
  const std::vector<Format> formats = {Format::half,     Format::deft16,   Format::deft16q,
                                       Format::deft8_e1, Format::deft8_e2, Format::deft8_e3,
                                       Format::deft8_e4, Format::deft8_e5, Format::deft8_e6,
                                       Format::deft8_e7};
  uint64_t seed = 1;
  for (const Isa isa : isas()) {
    set_active_isa(isa);
    for (const Case& c : cases()) {
      Rng rx(seed * 7);
      const Tensor x = rand_tensor(c.input, rx);
      for (const Format f : formats)
        for (const FissionMode m : {FissionMode::fission, FissionMode::offchip}) {
          for (const Rounding r : {Rounding::nearest_even, Rounding::truncate}) {
            if (r == Rounding::truncate && f != Format::deft16 && f != Format::deft8_e4) continue;
            Attrs fa;
            fa.set("format", format_name(f)).set("fission_mode", fission_mode_name(m))
                .set("rounding", rounding_name(r));
            Pair p = make_pair(c, fa, ++seed);
            round_trip_weight(*p.ref, c, f, r);
            // Summation order differs from sgemm: fp32 reassociation only.
            expect_close(run(*p.fis, x), run(*p.ref, x), 1e-5, 2e-5,
                         label(c, f, m, isa) + " rounding " + rounding_name(r));
          }
        }
    }
  }
}

// bf16 rounds the activations too (the B operand, to nearest even with denormals flushed:
// vdpbf16ps on avx512_bf16, the same rounding in software elsewhere). Reference: the fp32 layer
// on bf16 weights and bf16 inputs. Products of two bf16 values are exact in fp32, so only the
// summation order differs: tolerance 1e-5 relative + 2e-5 absolute, as for the other formats.
TEST_F(FissionLayer, Bf16EqualsFp32OnBf16WeightsAndActivations) {
  uint64_t seed = 100;
  for (const Isa isa : isas()) {
    set_active_isa(isa);
    for (const Case& c : cases()) {
      Rng rx(seed);
      Tensor x = rand_tensor(c.input, rx);
      x[0] = 1e-40f;   // an fp32 subnormal activation: flushed to zero
      const Tensor xq = bf16_rounded(x);
      for (const FissionMode m : {FissionMode::fission, FissionMode::offchip}) {
        Attrs fa;
        fa.set("format", "bf16").set("fission_mode", fission_mode_name(m));
        Pair p = make_pair(c, fa, ++seed);
        round_trip_weight(*p.ref, c, Format::bf16, Rounding::nearest_even);
        // Off-chip packing widens the weights only: B stays fp32 (fission.h).
        const Tensor& xr = m == FissionMode::fission ? xq : x;
        expect_close(run(*p.fis, x), run(*p.ref, xr), 1e-5, 2e-5,
                     label(c, Format::bf16, m, isa));
      }
    }
  }
}

// Deft-8 in bf16_dot mode: the conv and fc layers (K-pair strips and the native tile on an
// avx512_bf16 CPU with VBMI, the fp32 kernels elsewhere) against the fp32 layer on the
// round-tripped Deft-8 weights and bf16-rounded inputs, every exponent width, every ISA.
TEST_F(FissionLayer, Deft8InBf16DotModeEqualsFp32OnRoundedOperands) {
  uint64_t seed = 300;
  for (const Isa isa : isas()) {
    set_active_isa(isa);
    for (const Case& c : cases()) {
      Rng rx(seed);
      const Tensor x = rand_tensor(c.input, rx);
      const Tensor xq = bf16_rounded(x);
      for (int n = 1; n <= 7; ++n) {
        const Format f = deft8_format(n);
        Attrs fa;
        fa.set("format", format_name(f)).set("fission_mode", "bf16_dot");
        Pair p = make_pair(c, fa, ++seed);
        round_trip_weight(*p.ref, c, f, Rounding::nearest_even);
        expect_close(run(*p.fis, x), run(*p.ref, xq), 1e-5, 2e-5,
                     label(c, f, FissionMode::bf16_dot, isa));
      }
    }
  }
}

// A frozen 3x3 conv where Winograd pays (64 channels, 64 tiles) in a software-widened format
// runs Winograd on the weights widened once: bit for bit the fp32 model on weights
// round-tripped through the scalar codecs, Winograd or not, and within Winograd's rounding of
// the direct kernels. bf16 (which rounds the activations too) keeps its own kernels, except on
// avx512_bf16, where the policy runs Winograd's bf16 variant (its arithmetic is checked in
// test_winograd.cpp): there its RMS error against the fp32 conv is within 2.5x that of the bf16
// direct kernels (it rounds transformed values, sums of up to 16 inputs, instead of the inputs:
// 1.9x here).
TEST_F(FissionLayer, SoftwareFormatsRunWinogradOnWidenedWeights) {
  test::WinogradPolicyGuard guard;
  Attrs conv;
  conv.set("out_channels", 32).set("kernel", 3).set("pad", 1);
  const Case c{"conv", conv, {1, 64, 16, 16}, 1};
  Rng rx(5);
  const Tensor x = rand_tensor(c.input, rx);
  auto frozen = [&](Layer& l, WinogradPolicy p) {
    set_winograd_policy(p);
    l.infer({x.shape()});
    Tensor out;
    RunContext ctx{false, nullptr};
    ctx.frozen = true;
    l.forward({&x}, out, ctx);
    return out;
  };
  for (const Isa isa : isas()) {
    set_active_isa(isa);
    for (const Format f : {Format::half, Format::deft16, Format::deft16q, Format::deft8_e4,
                           Format::bf16}) {
      Attrs fa;
      fa.set("format", format_name(f));
      Pair p = make_pair(c, fa, 77);
      if (f == Format::bf16) {
        const Tensor on = frozen(*p.fis, WinogradPolicy::on);
        const Tensor off = frozen(*p.fis, WinogradPolicy::off);
        const std::string what = label(c, f, FissionMode::fission, isa);
        if (isa != Isa::avx512_bf16) {   // its own kernels whatever the policy
          expect_identical(on, off, what);
          continue;
        }
        const Tensor f32 = frozen(*p.ref, WinogradPolicy::off);
        double e_on = 0, e_off = 0;
        for (int64_t i = 0; i < on.numel(); ++i) {
          e_on += (on[i] - f32[i]) * (on[i] - f32[i]);
          e_off += (off[i] - f32[i]) * (off[i] - f32[i]);
        }
        EXPECT_GT(e_off, 0.0) << what << ": the direct bf16 kernels gave the fp32 output";
        EXPECT_GT(e_on, 0.0) << what << ": bf16 Winograd gave the fp32 output";
        EXPECT_LT(std::sqrt(e_on), 2.5 * std::sqrt(e_off)) << what << ": bf16 Winograd's error";
        bool differ = false;
        for (int64_t i = 0; i < on.numel() && !differ; ++i) differ = on[i] != off[i];
        EXPECT_TRUE(differ) << what << ": bf16 Winograd identical to the direct kernels";
        continue;
      }
      round_trip_weight(*p.ref, c, f, Rounding::nearest_even);
      const Tensor wino = frozen(*p.fis, WinogradPolicy::on);
      const Tensor direct = frozen(*p.fis, WinogradPolicy::off);
      const std::string what = label(c, f, FissionMode::fission, isa);
      expect_identical(wino, frozen(*p.ref, WinogradPolicy::on), what + " Winograd");
      expect_identical(direct, frozen(*p.ref, WinogradPolicy::off), what + " direct");
      expect_close(wino, direct, 1e-4, 1e-4, what + " Winograd against direct");
      if (gemm::winograd_fast(isa)) {
        bool differ = false;
        for (int64_t i = 0; i < wino.numel() && !differ; ++i) differ = wino[i] != direct[i];
        EXPECT_TRUE(differ) << what << ": Winograd identical to the direct kernels, so not run";
      }
    }
  }
}

TEST_F(FissionLayer, F32IsIdenticalToNoAttribute) {
  uint64_t seed = 200;
  for (const Case& c : cases()) {
    Rng rx(seed);
    const Tensor x = rand_tensor(c.input, rx);
    Attrs fa;
    fa.set("format", "f32").set("fission_mode", "offchip");
    Pair p = make_pair(c, fa, ++seed);
    expect_identical(run(*p.fis, x), run(*p.ref, x), label(c, Format::f32, FissionMode::offchip,
                                                             active_isa()));
  }
}

// Training forward and backward run the fp32 weights whatever the format.
TEST_F(FissionLayer, TrainingIgnoresTheFormat) {
  uint64_t seed = 300;
  for (const Case& c : cases()) {
    Rng rx(seed);
    const Tensor x = rand_tensor(c.input, rx);
    Attrs fa;
    fa.set("format", "deft8_e3");
    Pair p = make_pair(c, fa, ++seed);
    const Tensor yf = run(*p.fis, x, true), yr = run(*p.ref, x, true);
    expect_identical(yf, yr, "training forward, " + c.type);
    Tensor dxf, dxr;
    std::vector<Tensor*> df{&dxf}, dr{&dxr};
    p.fis->backward({&x}, yf, yf, df, RunContext{true, nullptr});
    p.ref->backward({&x}, yr, yr, dr, RunContext{true, nullptr});
    expect_identical(dxf, dxr, "backward dx, " + c.type);
    expect_identical(p.fis->param("weight")->grad, p.ref->param("weight")->grad,
                     "backward dW, " + c.type);
  }
}

// The packed weights are cached; a training forward, invalidate() and set_attr drop them.
TEST_F(FissionLayer, PackedWeightCache) {
  const Case c = cases()[0];
  Rng rx(400);
  const Tensor x = rand_tensor(c.input, rx);
  Attrs fa;
  fa.set("format", "deft16");
  Pair p = make_pair(c, fa, 401);
  p.fis->infer({x.shape()});
  const Tensor y0 = fwd(*p.fis, x);
  Tensor& w = p.fis->param("weight")->value;
  for (int64_t i = 0; i < w.numel(); ++i) w[i] *= 2.0f;   // exact in every format
  expect_identical(fwd(*p.fis, x), y0, "cached: in-place change not seen before invalidate()");
  p.fis->invalidate();
  const Tensor y1 = fwd(*p.fis, x);
  bool changed = false;
  for (int64_t i = 0; i < y0.numel(); ++i) changed = changed || y0[i] != y1[i];
  EXPECT_TRUE(changed) << "invalidate() repacks";
  // A training forward drops the cache: the next inference sees the values of that moment.
  for (int64_t i = 0; i < w.numel(); ++i) w[i] *= 0.5f;
  fwd(*p.fis, x, true);
  expect_identical(fwd(*p.fis, x), y0, "after a training forward");
  // set_attr repacks in the new format; f32 is the plain layer again.
  p.fis->set_attr("format", std::string("f32"));
  expect_identical(fwd(*p.fis, x), run(*p.ref, x), "set_attr format f32");
  // infer() (Model::add, a new input shape) drops the packed weights too.
  p.fis->set_attr("format", std::string("deft16"));
  const Tensor y2 = fwd(*p.fis, x);
  for (int64_t i = 0; i < w.numel(); ++i) w[i] *= 2.0f;
  p.fis->infer({x.shape()});
  expect_identical(fwd(*p.fis, x), y1, "after infer()");
  expect_identical(y2, y0, "deft16 again, same weights");
}

TEST_F(FissionLayer, BadAttributesAreRefused) {
  Attrs fc;
  fc.set("out_features", 4);
  EXPECT_THROW(make_layer("fc", Attrs(fc).set("format", "deft9")), Error);
  EXPECT_THROW(make_layer("fc", Attrs(fc).set("fission_mode", "dram")), Error);
  EXPECT_THROW(make_layer("conv", Attrs().set("out_channels", 2).set("kernel", 3)
                                       .set("rounding", "up")), Error);
  auto l = make_layer("fc", fc);
  EXPECT_THROW(l->set_attr("format", std::string("nope")), Error);
  EXPECT_FALSE(l->attrs().has("format")) << "a refused value is rolled back";
  EXPECT_THROW(l->set_attr("out_features", int64_t{8}), Error);
  EXPECT_EQ(l->attrs().get_int("out_features"), 4);
  auto relu = make_layer("relu", Attrs());
  EXPECT_THROW(relu->set_attr("format", std::string("half")), Error);
}

TEST_F(FissionLayer, SetModelFormatSelectsLayersAndSurvivesSaveLoad) {
  Model m({1, 8, 8});
  m.add("conv1", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
  m.add("relu1", "relu", Attrs());
  m.add("fc1", "fc", Attrs().set("out_features", 10));
  m.add("fc2", "fc", Attrs().set("out_features", 3));
  m.init_params(7);
  Rng rx(8);
  const Tensor x = rand_tensor({2, 1, 8, 8}, rx);
  const Tensor y32 = m.forward(x);

  EXPECT_EQ(set_model_format(m, Format::deft16q), 3);
  for (const Node& n : m.nodes())
    EXPECT_EQ(layer_format(*n.layer), n.name == "relu1" ? Format::f32 : Format::deft16q);
  EXPECT_EQ(set_model_format(m, Format::bf16, FissionMode::fission, {"conv"}), 1);
  EXPECT_EQ(set_model_format(m, Format::deft8_e4, FissionMode::offchip, {"fc2"}), 1);
  EXPECT_EQ(layer_format(*m.nodes()[0].layer), Format::bf16);
  EXPECT_EQ(layer_format(*m.nodes()[2].layer), Format::deft16q);
  EXPECT_EQ(layer_format(*m.nodes()[3].layer), Format::deft8_e4);
  EXPECT_EQ(m.nodes()[3].layer->attrs().get_str("fission_mode"), "offchip");
  EXPECT_THROW(set_model_format(m, Format::half, FissionMode::fission, {"relu1"}), Error);
  EXPECT_THROW(set_model_format(m, Format::half, FissionMode::fission, {"nope"}), Error);
  const Tensor ymix = m.forward(x);

  const std::string path = (std::filesystem::temp_directory_path() /
                            ("deftnn_fission_layers_" + std::to_string(getpid()) + ".deft"))
                               .string();
  save_model(m, path);
  Model back = load_model(path);
  std::filesystem::remove(path);
  expect_identical(back.forward(x), ymix, "reloaded model keeps the formats");

  EXPECT_EQ(set_model_format(m, Format::f32), 3);
  for (const Node& n : m.nodes()) EXPECT_FALSE(n.layer->attrs().has("format"));
  expect_identical(m.forward(x), y32, "f32 again");

  // Specs: per type and per name, later parts override; applying one resets the others.
  const FormatSpec mix = parse_format_spec("conv:bf16+fc:deft8_e4+fc2:half");
  ASSERT_EQ(mix.parts.size(), 3u);
  EXPECT_FALSE(mix.single());
  EXPECT_TRUE(parse_format_spec("deft16").single());
  apply_format_spec(m, mix);
  EXPECT_EQ(layer_format(*m.nodes()[0].layer), Format::bf16);
  EXPECT_EQ(layer_format(*m.nodes()[2].layer), Format::deft8_e4);
  EXPECT_EQ(layer_format(*m.nodes()[3].layer), Format::half);
  apply_format_spec(m, parse_format_spec("fc1:deft16"));
  EXPECT_EQ(layer_format(*m.nodes()[0].layer), Format::f32);
  EXPECT_EQ(layer_format(*m.nodes()[2].layer), Format::deft16);
  EXPECT_EQ(layer_format(*m.nodes()[3].layer), Format::f32);
  EXPECT_EQ(parse_format_specs("all").size(), 12u);
  EXPECT_EQ(parse_format_specs("f32,conv:bf16+fc:deft8_e4").size(), 2u);
  EXPECT_THROW(parse_format_spec("conv:deft9"), Error);
  EXPECT_THROW(parse_format_spec(":half"), Error);
  EXPECT_THROW(parse_format_spec("half+"), Error);
  EXPECT_THROW(apply_format_spec(m, parse_format_spec("nosuchlayer:half")), Error);
}

namespace {
using test::run_cli;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST_F(FissionLayer, RooflineBytesAndRoofPerFormat) {
  Model m({3, 10, 10});
  m.add("conv1", "conv", Attrs().set("out_channels", 8).set("kernel", 3));   // 8x8 out
  m.add("fc1", "fc", Attrs().set("out_features", 5));
  m.init_params(3);
  MachineRoof roof;
  roof.threads = 1;
  roof.fp32_gflops = 100;
  roof.bf16_gflops = 200;
  roof.dram_gbps = 10;
  const int64_t conv_flops = 2 * 2 * 8 * 64 * 27, fc_flops = 2 * 2 * 5 * 512;
  LayerRoof c = layer_roof(m, 0, 2, roof), f = layer_roof(m, 1, 2, roof);
  EXPECT_EQ(c.flops, conv_flops);
  EXPECT_EQ(f.flops, fc_flops);
  // fp32: weights + bias + input + output, 4 bytes each.
  EXPECT_DOUBLE_EQ(c.bytes, 4.0 * (8 * 27 + 8 + 2 * 300 + 2 * 512));
  EXPECT_DOUBLE_EQ(f.bytes, 4.0 * (5 * 512 + 5 + 2 * 512 + 2 * 5));
  EXPECT_TRUE(f.memory_bound);
  EXPECT_DOUBLE_EQ(f.roof_ms, f.bytes / 10e9 * 1e3);
  set_model_format(m, Format::bf16, FissionMode::fission, {"conv"});
  set_model_format(m, Format::deft8_e4, FissionMode::fission, {"fc"});
  const LayerRoof c16 = layer_roof(m, 0, 2, roof), f8 = layer_roof(m, 1, 2, roof);
  EXPECT_DOUBLE_EQ(c16.bytes, c.bytes - 2.0 * 8 * 27);
  EXPECT_DOUBLE_EQ(f8.bytes, f.bytes - 3.0 * 5 * 512);
  const double t16 = std::max(conv_flops / 200e9, c16.bytes / 10e9) * 1e3;
  EXPECT_DOUBLE_EQ(c16.roof_ms, t16);   // the native bf16 peak
  // Deft-16 on the conv: 2 bytes a weight below 128 output columns a call (batch 1: 64), 4
  // from 128 on where its weights are widened once (batch 3: 192; AVX-512 only, 2 elsewhere).
  set_model_format(m, Format::deft16, FissionMode::fission, {"conv"});
  EXPECT_DOUBLE_EQ(layer_roof(m, 0, 1, roof).bytes, 2.0 * 8 * 27 + 4.0 * (8 + 300 + 512));
  const bool avx512 = active_isa() == Isa::avx512 || active_isa() == Isa::avx512_bf16;
  EXPECT_DOUBLE_EQ(layer_roof(m, 0, 3, roof).bytes,
                   (avx512 ? 4.0 : 2.0) * 8 * 27 + 4.0 * (8 + 3 * 300 + 3 * 512));
  const MachineRoof r = measure_roof(1);
  EXPECT_EQ(r.fp32_gflops > 0, active_isa() != Isa::portable);   // no SIMD probe there
  EXPECT_GT(r.dram_gbps, 0.0);
  EXPECT_EQ(r.bf16_gflops > 0, active_isa() == Isa::avx512_bf16);
}

TEST(CliFormats, BenchComparesFormatsSideBySide) {
  std::string out;
  const std::string json = testing::TempDir() + "/bench_formats.json";
  ASSERT_EQ(run_cli("--threads 1 bench lenet --formats deft16q,bf16,conv:bf16+fc:deft8_e4 "
                    "--batch 1 3 --iters 2 --warmup 0 --json " + json, &out), 0) << out;
  for (const char* want : {"speedup", "f32", "deft16q", "bf16", "conv:bf16+fc:deft8_e4", "conv2",
                           "ip1", "batch 3"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " in\n" << out;
  const std::string j = slurp(json);
  EXPECT_NE(j.find("\"format\""), std::string::npos) << j.substr(0, 400);
  EXPECT_NE(j.find("\"speedup\""), std::string::npos);
  for (const char* want : {"roofline", "time/roof"}) EXPECT_NE(out.find(want), std::string::npos) << want;
  for (const char* want : {"\"bytes_per_flop\"", "\"roof_ms\"", "\"dram_gbps\""})
    EXPECT_NE(j.find(want), std::string::npos) << want;
  EXPECT_NE(run_cli("bench lenet --formats deft9", &out), 0);
  EXPECT_NE(out.find("deft9"), std::string::npos) << out;
}

// Which kernels a software-widened format runs on AVX-512, as DEFTNN_VERBOSE reports them: a
// 3x3 conv where Winograd pays runs it on the widened weights; a conv with >= 128 output columns runs
// the fp32 direct kernels on weights widened once; the fc layer at batch 1 keeps the format in
// its tiles; bf16 stays on its own conv kernels.
TEST(CliFormats, SoftwareFormatsWidenOnceWhereFmaBound) {
  if (detected_isa() != Isa::avx512 && detected_isa() != Isa::avx512_bf16)
    GTEST_SKIP() << "weights are widened once for the AVX-512 direct tiles and Winograd only";
  const std::string path = testing::TempDir() + "/wide_fmt.deft";
  Model m({64, 16, 16});
  m.add("a", "conv", Attrs().set("out_channels", 32).set("kernel", 3).set("pad", 1));
  m.add("a_relu", "relu", Attrs());
  m.add("b", "conv", Attrs().set("out_channels", 16).set("kernel", 5).set("pad", 2));
  m.add("fc", "fc", Attrs().set("out_features", 10));
  m.init_params(3);
  save_model(m, path);
  std::string out;
  ASSERT_EQ(test::run_cli("--threads 1 bench " + path + " --formats deft16,bf16 --iters 1 "
                          "--warmup 0",
                          &out, "DEFTNN_VERBOSE=1 "),
            0)
      << out;
  for (const char* want :
       {"a (conv) -> [1, 32, 16, 16]: winograd F(2x2,3x3) on deft16 weights widened once",
        "b (conv) -> [1, 16, 16, 16]: fission_conv, no im2col: deft16 weights widened once to "
        "f32 weights",
        "a (conv) -> [1, 32, 16, 16]: fission_conv, no im2col: bf16 weights"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " in\n" << out;
  const size_t fc = out.find("fc (fc) -> [1, 10]: ");
  ASSERT_NE(fc, std::string::npos) << out;
  EXPECT_NE(out.find("deft16", fc), std::string::npos) << out.substr(fc, 200);
}

// Native bf16 fully connected layers at a batch of whole 32-sample panels broadcast their weights
// from 12-row strips (ops/fc.cpp, row_strips; the values are checked bit for bit in
// test_fission.cpp), other batches keep the fission tiles, and the outputs of both agree with
// the layer's fp32 output within bf16 rounding.
TEST(CliFormats, Bf16FcAtBatch32BroadcastsItsWeights) {
  if (detected_isa() < Isa::avx512_bf16) GTEST_SKIP() << "needs avx512_bf16";
  const std::string path = testing::TempDir() + "/fc_rows.deft";
  Model m({300});
  m.add("fc", "fc", Attrs().set("out_features", 40));
  m.init_params(3);
  save_model(m, path);
  std::string out;
  ASSERT_EQ(test::run_cli("bench " + path + " --batch 16 32 --formats bf16 --iters 1 --warmup 0",
                          &out, "DEFTNN_VERBOSE=1 "),
            0)
      << out;
  EXPECT_NE(out.find("fc (fc) -> [32, 40]: bf16 GEMM Y^T = W X^T, weights in 12-row K-pair "
                     "strips packed once, sbgemm_pairs_12x32__avx512bf16"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("fc (fc) -> [16, 40]: fission GEMM Y^T = W X^T, bf16"), std::string::npos)
      << out;
  // In process: batch 32 in bf16 within bf16 rounding of fp32, bias included.
  test::IsaGuard guard;
  set_active_isa(Isa::avx512_bf16);
  const Tensor x = test::random_tensor({32, 300}, 4);
  m.freeze(true);
  const Tensor f32 = m.forward(x).clone();
  m.nodes()[static_cast<size_t>(m.find("fc"))].layer->set_attr("format", std::string("bf16"));
  const Tensor b16 = m.forward(x).clone();
  for (int64_t i = 0; i < f32.numel(); ++i)
    ASSERT_NEAR(b16[i], f32[i], 0.05 * (1 + std::fabs(f32[i]))) << "at " << i;
}

TEST(CliFormats, EvalUnderAFormatAndSweep) {
  const std::string model = testing::TempDir() + "/fmt_lenet.deft";
  Model m = build_zoo("lenet", ZooOptions{{1, 28, 28}, 10});
  m.init_params(3);
  save_model(m, model);
  std::string out;
  const std::string json = testing::TempDir() + "/eval_formats.json";
  const int rc = run_cli("eval " + model + " --format deft16q --limit 64", &out);
  if (rc != 0 && out.find("dataset-fashion-mnist") != std::string::npos)
    GTEST_SKIP() << "no Fashion-MNIST here: " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("format deft16q"), std::string::npos) << out;
  ASSERT_EQ(run_cli("eval " + model + " --formats deft16,deft8_e3 --limit 64 --json " + json, &out),
            0) << out;
  for (const char* want : {"f32", "deft16", "deft8_e3", "d top-1"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " in\n" << out;
  EXPECT_NE(slurp(json).find("\"delta_top1\""), std::string::npos);
  EXPECT_NE(run_cli("eval " + model + " --format nope", &out), 0);
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  std::filesystem::remove(model);
}
