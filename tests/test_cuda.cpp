// The CUDA backend (built only when a CUDA compiler is found; skipped at run time without a
// device) against the CPU library: widening bit for bit against the formats' scalar reference,
// the fission GEMM against a naive double-precision GEMM on the widened operands, im2col (with
// retained rows) against a naive one, and the layout contract's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <sys/wait.h>
#include <vector>

#include "deftnn/cuda.h"
#include "deftnn/error.h"
#include "deftnn/formats.h"
#include "deftnn/model.h"
#include "deftnn/optimize.h"
#include "deftnn/rng.h"
#include "deftnn/sve.h"
#include "deftnn/zoo.h"

namespace deftnn {
namespace {

#define REQUIRE_CUDA() \
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device"

// The values a packed operand holds, widened on the host by the formats' reference (row by row,
// each row padded to ld like pack_weights does).
std::vector<float> widened(const std::vector<float>& m, int64_t rows, int64_t cols, Format f,
                           Rounding r) {
  const int64_t ld = cuda::padded_ld(cols);
  std::vector<float> out(static_cast<size_t>(rows * cols)), row(static_cast<size_t>(ld)),
      back(static_cast<size_t>(ld));
  std::vector<unsigned char> codes(static_cast<size_t>(encoded_bytes(f, ld)));
  for (int64_t i = 0; i < rows; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    std::memcpy(row.data(), m.data() + i * cols, static_cast<size_t>(cols) * 4);
    encode_ref(f, r, row.data(), codes.data(), ld, static_cast<uint64_t>(i));
    decode_ref(f, codes.data(), back.data(), ld);
    std::memcpy(out.data() + i * cols, back.data(), static_cast<size_t>(cols) * 4);
  }
  return out;
}

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Rng g(seed);
  std::vector<float> m(static_cast<size_t>(rows * cols));
  for (auto& v : m) v = static_cast<float>(g.normal());
  return m;
}

// c (M x N, ldc apart) against alpha * a (M x K) * b (K x N) computed in double:
// |error| <= tol * alpha * sum |a||b| + 1e-30 for every value (the first 5 failures reported).
void expect_gemm(const float* c, int64_t ldc, const float* a, const float* b, int64_t M, int64_t N,
                 int64_t K, double alpha, double tol) {
  int bad = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        ref += double(a[i * K + k]) * b[k * N + j];
        mag += std::fabs(double(a[i * K + k]) * b[k * N + j]);
      }
      ref *= alpha;
      const double got = c[i * ldc + j];
      if (!(std::fabs(got - ref) <= tol * std::fabs(alpha) * mag + 1e-30) && bad++ < 5)
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << got << ", reference " << ref;
    }
  EXPECT_EQ(bad, 0);
}

// C = A (M x K) * B (K x N) on the GPU with A in format fa, B in fb; compared with a double
// GEMM on the host-widened operands, |error| <= 1e-5 * sum |a||b| + 1e-30.
// The tensor cores read Deft-16Q codes as bf16 (no spill): their reference is Deft-16. Their
// fp32 accumulation is not IEEE add by add: tolerance 1e-4 there.
void check_gemm(int64_t M, int64_t N, int64_t K, Format fa, Format fb, cuda::Staging st,
                Rounding ra = Rounding::nearest_even) {
  const bool tc = st == cuda::Staging::tensor_core;
  const double tol = tc ? 1e-4 : 1e-5;
  auto ref_format = [&](Format f) { return tc && f == Format::deft16q ? Format::deft16 : f; };
  SCOPED_TRACE(std::string(format_name(fa)) + " x " + format_name(fb) + " " +
               cuda::staging_name(st) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
               " K=" + std::to_string(K));
  const auto a = random_matrix(M, K, 11 + M + 3 * K), b = random_matrix(K, N, 5 + N + 7 * K);
  const auto pa = cuda::pack_weights(a.data(), M, K, K, fa, ra);
  const auto pb = cuda::pack_weights(b.data(), K, N, N, fb, Rounding::nearest_even);
  const int64_t ldc = N + 3;
  cuda::DeviceBuffer dc(static_cast<size_t>(M * ldc) * 4);
  cuda::gemm(pa.operand, pb.operand, dc.as<float>(), ldc, 0.5f, st);
  std::vector<float> c(static_cast<size_t>(M * ldc));
  dc.download(c.data(), c.size() * 4);
  const auto wa = widened(a, M, K, ref_format(fa), ra), wb = widened(b, K, N, ref_format(fb), Rounding::nearest_even);
  expect_gemm(c.data(), ldc, wa.data(), wb.data(), M, N, K, 0.5, tol);
}

TEST(Cuda, DeviceReports) {
  REQUIRE_CUDA();
  EXPECT_FALSE(cuda::device_name().empty());
}

// Every 16-bit code of half and Deft-16, and every hi code of a Deft-16Q word (with a varying lo
// half), widened by the GPU (row m of A holds the code under test in column `pick`, B picks that
// column): equal to the scalar reference, value for value.
TEST(Cuda, WidensEvery16BitCodeLikeTheReference) {
  REQUIRE_CUDA();
  const int64_t M = 65536, K = 16;
  for (Format f : {Format::half, Format::deft16, Format::deft16q}) {
    SCOPED_TRACE(format_name(f));
    for (int pick : {0, 1}) {
      // Word 0 of row m: the code under test (m) in the picked half, a finite code (exponent
      // field never all ones) in the other, which B multiplies by zero.
      std::vector<uint16_t> codes(static_cast<size_t>(M * K), 0);
      for (int64_t m = 0; m < M; ++m) {
        codes[m * K + pick] = static_cast<uint16_t>(m);
        codes[m * K + 1 - pick] = static_cast<uint16_t>((m * 40503u) & 0xBBFFu);
      }
      cuda::DeviceBuffer da(codes.size() * 2);
      da.upload(codes.data(), codes.size() * 2);
      const cuda::Operand A{f, da.data(), M, K, K};
      std::vector<float> x(K, 0.0f);
      x[pick] = 1.0f;
      cuda::DeviceBuffer dx(K * 4), dc(M * 4);
      dx.upload(x.data(), K * 4);
      cuda::gemm(A, cuda::Operand{Format::f32, dx.data(), K, 1, 1}, dc.as<float>(), 1);
      std::vector<float> c(M);
      dc.download(c.data(), M * 4);
      int bad = 0;
      for (int64_t m = 0; m < M; ++m) {
        float ref[2];
        decode_ref(f, &codes[m * K], ref, 2);
        const float want = ref[pick] + 0.0f;   // the kernel's sum turns -0 into +0
        const bool same = (std::isnan(want) && std::isnan(c[m])) || want == c[m];
        if (!same && bad++ < 5)
          ADD_FAILURE() << "code " << m << " pick " << pick << ": " << c[m] << " vs " << want;
      }
      EXPECT_EQ(bad, 0);
    }
  }
}

TEST(Cuda, WidensEveryDeft8CodeLikeTheReference) {
  REQUIRE_CUDA();
  const int64_t M = 256, K = 16;
  for (int n = 1; n <= 7; ++n) {
    const Format f = deft8_format(n);
    SCOPED_TRACE(format_name(f));
    std::vector<uint8_t> codes(M * K, 0);
    for (int64_t m = 0; m < M; ++m) codes[m * K + 5] = static_cast<uint8_t>(m);
    cuda::DeviceBuffer da(codes.size()), dx(K * 4), dc(M * 4);
    da.upload(codes.data(), codes.size());
    std::vector<float> x(K, 0.0f);
    x[5] = 1.0f;
    dx.upload(x.data(), K * 4);
    cuda::gemm(cuda::Operand{f, da.data(), M, K, K}, cuda::Operand{Format::f32, dx.data(), K, 1, 1},
               dc.as<float>(), 1);
    std::vector<float> c(M);
    dc.download(c.data(), M * 4);
    for (int64_t m = 0; m < M; ++m)
      ASSERT_EQ(c[m], deft8_to_float(n, static_cast<uint8_t>(m)) + 0.0f) << "code " << m;
  }
}

TEST(Cuda, GemmMatchesNaiveOnOddSizesEveryFormatAndStaging) {
  REQUIRE_CUDA();
  struct Pair { Format a, b; };
  const Pair pairs[] = {{Format::f32, Format::f32},         {Format::half, Format::half},
                        {Format::half, Format::f32},        {Format::deft16, Format::deft16},
                        {Format::deft16, Format::f32},      {Format::deft16q, Format::deft16q},
                        {Format::deft16q, Format::f32},     {Format::deft8_e4, Format::f32},
                        {Format::deft8_e3, Format::f32}};
  const int64_t sizes[][3] = {{1, 1, 1},    {7, 7, 7},     {17, 17, 17}, {1, 255, 63},
                              {255, 1, 63}, {130, 300, 33}, {63, 17, 255}, {129, 129, 40}};
  for (const Pair& p : pairs)
    for (cuda::Staging st : {cuda::Staging::near_compute, cuda::Staging::near_weights, cuda::Staging::off_chip})
      for (const auto& s : sizes) check_gemm(s[0], s[1], s[2], p.a, p.b, st);
}

// The tensor-core kernel (half as fp16, Deft-16/16Q as bf16, Deft-8 weights widened to bf16)
// on odd sizes, and split over K.
TEST(Cuda, TensorCoreGemmMatchesNaive) {
  REQUIRE_CUDA();
  struct Pair { Format a, b; };
  const Pair pairs[] = {{Format::half, Format::half}, {Format::deft16, Format::deft16},
                        {Format::deft16q, Format::deft16q}, {Format::deft8_e4, Format::deft16},
                        {Format::deft8_e5, Format::deft16q}};
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 7, 7}, {17, 33, 17}, {130, 300, 33}, {63, 17, 255},
                              {384, 169, 1152}};
  for (const Pair& p : pairs)
    for (const auto& s : sizes) check_gemm(s[0], s[1], s[2], p.a, p.b, cuda::Staging::tensor_core);
  EXPECT_THROW(check_gemm(8, 8, 8, Format::half, Format::deft16, cuda::Staging::tensor_core), Error);
}

// A batch-1 convolution shape (CaffeNet conv3 at K/2): few tiles, so K is split over blocks and
// the partial tiles are added atomically; and a batch-1 fully connected shape (N = 1 and 5).
TEST(Cuda, GemmSplitKAndWeightRowKernel) {
  REQUIRE_CUDA();
  check_gemm(384, 169, 1152, Format::f32, Format::f32, cuda::Staging::near_compute);
  check_gemm(96, 169, 2304, Format::deft16q, Format::deft16q, cuda::Staging::near_compute);
  check_gemm(96, 169, 2304, Format::half, Format::half, cuda::Staging::near_weights);
  check_gemm(96, 169, 2304, Format::deft8_e5, Format::f32, cuda::Staging::off_chip);
  for (Format f : {Format::f32, Format::half, Format::deft16, Format::deft16q, Format::deft8_e4}) {
    check_gemm(1000, 1, 4097, f, Format::f32, cuda::Staging::near_compute);
    check_gemm(33, 5, 1001, f, Format::f32, cuda::Staging::near_compute);
  }
  // Truncated weights of a Deft-16 layer (the paper's rounding).
  check_gemm(64, 40, 300, Format::deft16, Format::deft16, cuda::Staging::near_compute, Rounding::truncate);
}

// im2col of 2 images with an odd geometry, every row and a permuted subset of rows (a synapse
// plan's retained list), in every activation format: equal, code for code, to a naive im2col
// encoded by the formats' reference.
TEST(Cuda, Im2colReadsOnlyTheRetainedRowsInTheOperandFormat) {
  REQUIRE_CUDA();
  cuda::ConvGeometry g;
  g.C = 3; g.H = 7; g.W = 9; g.kh = 3; g.kw = 2; g.sh = 2; g.sw = 1; g.ph = 1; g.pw = 0;
  const int64_t images = 2, OH = g.OH(), OW = g.OW(), cols = images * OH * OW, K = g.K();
  const int64_t ld = cuda::padded_ld(cols);
  auto x = random_matrix(images, g.C * g.H * g.W, 3);
  x[4] = -0.0f;
  x[7] = std::nanf("");
  cuda::DeviceBuffer dx(x.size() * 4);
  dx.upload(x.data(), x.size() * 4);
  std::vector<int32_t> subset = {17, 2, 5, 0, 11, 9, 16};
  cuda::DeviceBuffer drows(subset.size() * 4);
  drows.upload(subset.data(), subset.size() * 4);
  auto naive = [&](int64_t r, int64_t n) -> float {
    const int64_t c = r / (g.kh * g.kw), i = r / g.kw % g.kh, j = r % g.kw;
    const int64_t img = n / (OH * OW), oh = n % (OH * OW) / OW, ow = n % OW;
    const int64_t ih = oh * g.sh - g.ph + i, iw = ow * g.sw - g.pw + j;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return 0.0f;
    return x[static_cast<size_t>(img * g.C * g.H * g.W + (c * g.H + ih) * g.W + iw)];
  };
  struct Case { Format f; Rounding r; };
  for (Case cs : {Case{Format::f32, Rounding::nearest_even}, Case{Format::half, Rounding::nearest_even},
                  Case{Format::deft16, Rounding::truncate}, Case{Format::deft16, Rounding::nearest_even},
                  Case{Format::deft16q, Rounding::truncate}})
    for (bool use_subset : {false, true}) {
      SCOPED_TRACE(std::string(format_name(cs.f)) + " " + rounding_name(cs.r) +
                   (use_subset ? " subset" : " all rows"));
      const int64_t nrows = use_subset ? static_cast<int64_t>(subset.size()) : K;
      const size_t bytes = static_cast<size_t>(encoded_bytes(cs.f, nrows * ld));
      cuda::DeviceBuffer dout(bytes);
      cuda::im2col(g, images, dx.as<float>(), 0, use_subset ? drows.as<int32_t>() : nullptr, nrows,
                   cs.f, cs.r, dout.data(), ld);
      std::vector<unsigned char> got(bytes), want(bytes);
      dout.download(got.data(), bytes);
      std::vector<float> rowv(static_cast<size_t>(ld));
      const int64_t row_bytes = encoded_bytes(cs.f, ld);
      for (int64_t p = 0; p < nrows; ++p) {
        const int64_t r = use_subset ? subset[static_cast<size_t>(p)] : p;
        for (int64_t n = 0; n < ld; ++n) rowv[static_cast<size_t>(n)] = n < cols ? naive(r, n) : 0.0f;
        encode_ref(cs.f, cs.r, rowv.data(), want.data() + p * row_bytes, ld);
      }
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), bytes));
    }
}

// Synapse vector elimination end to end on the GPU: im2col of the retained rows times the
// truncated, scaled weights equals the naive GEMM of the truncated weights and the gathered rows.
TEST(Cuda, EliminatedConvolutionEqualsTheGatheredReference) {
  REQUIRE_CUDA();
  cuda::ConvGeometry g;
  g.C = 5; g.H = 11; g.W = 11; g.kh = 3; g.kw = 3; g.sh = 1; g.sw = 1; g.ph = 1; g.pw = 1;
  const int64_t K = g.K(), cols = g.OH() * g.OW(), M = 20, ld = cuda::padded_ld(cols);
  std::vector<char> keep(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) keep[static_cast<size_t>(k)] = (k * 7) % 3 != 0;
  const SynapsePlan plan = plan_elimination(keep);
  const auto w = random_matrix(M, K, 9), x = random_matrix(1, g.C * g.H * g.W, 10);
  const Tensor wt = truncate_weights(w.data(), M, K, K, plan);
  const int64_t kept = plan.kept();
  const auto pw = cuda::pack_weights(wt.data(), M, kept, kept, Format::f32);
  cuda::DeviceBuffer dx(x.size() * 4), drows(static_cast<size_t>(kept) * 4),
      dcol(static_cast<size_t>(kept * ld) * 4), dc(static_cast<size_t>(M * cols) * 4);
  dx.upload(x.data(), x.size() * 4);
  drows.upload(plan.retained.data(), static_cast<size_t>(kept) * 4);
  cuda::im2col(g, 1, dx.as<float>(), 0, drows.as<int32_t>(), kept, Format::f32,
               Rounding::nearest_even, dcol.data(), ld);
  cuda::gemm(pw.operand, cuda::Operand{Format::f32, dcol.data(), kept, cols, ld}, dc.as<float>(), cols);
  std::vector<float> c(static_cast<size_t>(M * cols));
  dc.download(c.data(), c.size() * 4);
  // Host reference: full im2col, gathered rows, naive GEMM.
  std::vector<float> full(static_cast<size_t>(K * cols));
  for (int64_t r = 0; r < K; ++r)
    for (int64_t n = 0; n < cols; ++n) {
      const int64_t ch = r / 9, i = r / 3 % 3, j = r % 3, ih = n / g.OW() - 1 + i, iw = n % g.OW() - 1 + j;
      full[static_cast<size_t>(r * cols + n)] =
          ih < 0 || ih >= g.H || iw < 0 || iw >= g.W ? 0.0f : x[static_cast<size_t>((ch * g.H + ih) * g.W + iw)];
    }
  const Tensor in = gather_retained_rows(full.data(), K, cols, cols, plan);
  expect_gemm(c.data(), cols, wt.data(), in.data(), M, cols, kept, 1.0, 1e-5);
}

TEST(Cuda, RejectsOperandsOutsideTheLayoutContract) {
  REQUIRE_CUDA();
  cuda::DeviceBuffer a(64 * 64 * 4), b(64 * 64 * 4), c(64 * 64 * 4);
  const cuda::Operand A{Format::f32, a.data(), 32, 32, 32};
  // ld not a multiple of 16 for the tiled kernel.
  EXPECT_THROW(cuda::gemm(A, cuda::Operand{Format::f32, b.data(), 32, 20, 20}, c.as<float>(), 20), Error);
  // K mismatch.
  EXPECT_THROW(cuda::gemm(A, cuda::Operand{Format::f32, b.data(), 31, 32, 32}, c.as<float>(), 32), Error);
  // A format pair without a kernel, and a format the GPU does not take.
  EXPECT_THROW(cuda::gemm(cuda::Operand{Format::deft8_e4, a.data(), 32, 32, 32},
                          cuda::Operand{Format::half, b.data(), 32, 32, 32}, c.as<float>(), 32), Error);
  EXPECT_THROW(cuda::pack_weights(std::vector<float>(16).data(), 4, 4, 4, Format::bf16), Error);
  // im2col: more rows than K, bad ld.
  cuda::ConvGeometry g;
  g.C = 2; g.H = 4; g.W = 4; g.kh = 3; g.kw = 3;
  EXPECT_THROW(cuda::im2col(g, 1, a.as<float>(), 0, nullptr, 17, Format::f32, Rounding::nearest_even,
                            b.data(), 16), Error);
  EXPECT_THROW(cuda::im2col(g, 1, a.as<float>(), 0, nullptr, 18, Format::f32, Rounding::nearest_even,
                            b.data(), 3), Error);
}


// A whole network on the GPU against the CPU engine's forward pass, fp32: |GPU - CPU| within
// 1e-4 of the output's largest magnitude.
// ref: the CPU model to compare with (null: m itself).
void check_session(Model& m, int64_t batch, uint64_t seed, const cuda::SessionOptions& opt = {},
                   float tol = 1e-4f, Model* ref = nullptr) {
  Shape in{batch};
  for (int64_t d : m.input_shape()) in.push_back(d);
  Tensor x(in);
  Rng r(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(r.uniform());
  const Tensor cpu = (ref ? *ref : m).forward(x);
  cuda::Session s(m, batch, opt);
  const Tensor gpu = s.run(x);
  ASSERT_EQ(gpu.shape(), cpu.shape());
  float peak = 0, err = 0;
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    peak = std::max(peak, std::fabs(cpu[i]));
    err = std::max(err, std::fabs(cpu[i] - gpu[i]));
  }
  EXPECT_GT(peak, 0.0f);
  EXPECT_LE(err, tol * peak) << s.summary();
}

TEST(Cuda, SessionMatchesTheCpuEngineOnThePapersNetworks) {
  REQUIRE_CUDA();
  for (const char* name : {"lenet", "cifarnet", "caffenet"}) {
    SCOPED_TRACE(name);
    Model m = build_zoo(name);
    m.init_params(42);
    for (int64_t batch : {1, 3}) check_session(m, batch, 7 + batch);
  }
}

TEST(Cuda, SessionRunsEliminatedLayers) {
  REQUIRE_CUDA();
  Model m = build_zoo("caffenet");
  m.init_params(5);
  for (const char* l : {"conv2", "conv3", "fc6", "fc7"}) eliminate_evenly(m, l);
  for (int64_t batch : {1, 2, 17}) check_session(m, batch, 3);
  Model lenet = build_zoo("lenet");
  lenet.init_params(6);
  eliminate_evenly(lenet, "conv2");
  eliminate_evenly(lenet, "ip1");
  check_session(lenet, 9, 4);
}

// The weights of every `type` layer replaced by their values in format f (the formats' reference).
void round_weights(Model& m, const std::string& type, Format f) {
  for (Node& n : m.nodes()) {
    if (n.layer->type() != type) continue;
    Tensor& w = n.layer->param("weight")->value;
    std::vector<unsigned char> codes(static_cast<size_t>(encoded_bytes(f, w.numel())));
    encode_ref(f, Rounding::nearest_even, w.data(), codes.data(), w.numel());
    decode_ref(f, codes.data(), w.data(), w.numel());
  }
}

// Reduced formats on the whole network: bounded, not exact. The reference is the CPU engine with
// Deft-8 fully connected weights rounded the same way (their 3-bit mantissa alone moves random
// CaffeNet's logits by ~10%); what remains is the 16-bit rounding of weights and activations:
// within 5% of the output's largest magnitude, every path.
TEST(Cuda, SessionInReducedFormatsStaysClose) {
  REQUIRE_CUDA();
  Model m = build_zoo("caffenet");
  m.init_params(8);
  Model m8 = build_zoo("caffenet");
  m8.init_params(8);
  round_weights(m8, "fc", Format::deft8_e4);
  struct Case { Format conv, fc; cuda::Staging st; };
  for (Case c : {Case{Format::half, Format::half, cuda::Staging::tensor_core},
                 Case{Format::deft16, Format::deft8_e4, cuda::Staging::tensor_core},
                 Case{Format::deft16q, Format::deft16q, cuda::Staging::near_compute},
                 Case{Format::deft16q, Format::deft8_e4, cuda::Staging::near_weights},
                 Case{Format::half, Format::half, cuda::Staging::off_chip}}) {
    cuda::SessionOptions o;
    o.conv_format = c.conv;
    o.fc_format = c.fc;
    o.staging = c.st;
    SCOPED_TRACE(std::string(format_name(c.conv)) + "/" + format_name(c.fc) + " " + cuda::staging_name(c.st));
    for (int64_t batch : {1, 20}) check_session(m, batch, 2, o, 0.05f, c.fc == Format::deft8_e4 ? &m8 : nullptr);
  }
}

TEST(Cuda, SessionRejectsAWrongInput) {
  REQUIRE_CUDA();
  Model m = build_zoo("lenet");
  m.init_params(1);
  cuda::Session s(m, 2);
  EXPECT_THROW(s.run(Tensor({3, 1, 28, 28})), Error);
  EXPECT_THROW(cuda::Session(m, 0), Error);
  cuda::SessionOptions o;
  o.fc_format = Format::bf16;
  EXPECT_THROW(cuda::Session(m, 1, o), Error);
}

// `deftnn bench MODEL --device cuda`: the network on the GPU, checked against the CPU engine.
TEST(Cuda, CommandLineBenchOnTheGpu) {
  REQUIRE_CUDA();
  const std::string cmd = std::string(DEFTNN_CLI_PATH) +
                          " bench lenet --device cuda --batch 1 4 --iters 5 --cuda-conv-format deft16q 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, 0) << out;
  EXPECT_NE(out.find("one CUDA graph"), std::string::npos) << out;
  EXPECT_NE(out.find("conv weights deft16q"), std::string::npos) << out;
}

}  // namespace
}  // namespace deftnn
