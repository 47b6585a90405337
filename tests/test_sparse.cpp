// Sparse inference of pruned layers (deftnn/prune.h, SparsePolicy): conv (direct sparse, any
// stride, padding, dilation, groups) and fc against naive formulas on odd shapes, every ISA path
// and 1 / 2 threads; inside a fused model against the dense kernels; the policy's choice; and
// `deftnn prune` on the command line.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "conv_ref.h"
#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/model.h"
#include "deftnn/prune.h"
#include "deftnn/rng.h"
#include "test_util.h"

using namespace deftnn;

namespace {

using test::ConvCase;
using test::IsaGuard;
using test::random_tensor;
using SparsePolicyGuard = test::SettingGuard<sparse_policy, set_sparse_policy>;
using KernelReportGuard = test::SettingGuard<kernel_report_enabled, set_kernel_report_enabled>;

struct ThreadsGuard {
  int saved = omp_get_max_threads();
  ~ThreadsGuard() { omp_set_num_threads(saved); }
};

std::vector<Isa> isas_here() {
  std::vector<Isa> v{Isa::portable};
  if (detected_isa() >= Isa::avx2) v.push_back(Isa::avx2);
  if (detected_isa() >= Isa::avx512) v.push_back(Isa::avx512);
  return v;
}

// Zeroes all but about `keep` of t's values (a seeded mask) and, when `empty_row` >= 0, all of
// row empty_row of a [rows, ...] weight, so that an output channel has no non-zero at all.
void prune_randomly(Tensor& t, double keep, uint64_t seed, int64_t empty_row = -1) {
  Rng r(seed);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (r.uniform(0.0f, 1.0f) >= keep) t[i] = 0.0f;
  if (empty_row >= 0) {
    const int64_t per = t.numel() / t.dim(0);
    std::fill(t.data() + empty_row * per, t.data() + (empty_row + 1) * per, 0.0f);
  }
}

Tensor frozen_forward(Layer& l, const Tensor& x) {
  Tensor y;
  RunContext ctx;
  ctx.frozen = true;
  l.forward({&x}, y, ctx);
  return y;
}

void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-4f * std::max(1.0f, std::fabs(want[i]))) << what << " at " << i;
}

TEST(SparseInference, ConvMatchesNaiveConvOnPrunedWeights) {
  const std::vector<ConvCase> cases = {
      // N  C   H   W   O  kh kw sh sw pt pl pb pr dh dw G
      {1, 3, 7, 9, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},        // unpadded 3x3: read in place
      {3, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},        // stride 2: per-row spmm
      {1, 4, 11, 13, 6, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 2},      // pad 2, groups 2, one image
      {3, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4},       // groups 4, three images
      {1, 3, 11, 12, 4, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},      // dilation 2
      {3, 5, 7, 9, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1},        // 1x1
      {2, 2, 8, 7, 3, 3, 2, 1, 1, 0, 1, 2, 0, 1, 1, 1},        // asymmetric pads, rect kernel
      {5, 17, 12, 12, 33, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1},    // LeNet's conv2 shape, odd sizes
      {1, 7, 13, 13, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     // one image, 17 channels
      {2, 3, 35, 35, 4, 11, 11, 4, 4, 0, 0, 0, 0, 1, 1, 1},    // k11 s4 (AlexNet's conv1)
      {1, 6, 9, 8, 9, 3, 3, 2, 1, 1, 0, 1, 0, 1, 1, 3},        // strides 2 x 1, groups 3
      {2, 2, 6, 6, 2, 3, 3, 1, 2, 1, 0, 0, 1, 1, 2, 1},        // stride 1 x 2, dilation w 2
      {1, 4, 9, 9, 5, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1},        // 1x1 stride 2 (a downsample)
      {2, 5, 3, 3, 6, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1},        // one output pixel: an SpMV
      {1, 3, 5, 2, 4, 3, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1},        // strided, one output column
  };
  SparsePolicyGuard policy;
  KernelReportGuard report;
  IsaGuard isa_guard;
  ThreadsGuard threads;
  set_kernel_report_enabled(true);
  for (size_t k = 0; k < cases.size(); ++k) {
    const ConvCase& c = cases[k];
    auto l = make_layer("conv", test::conv_attrs(c));
    const Tensor x = random_tensor({c.N, c.C, c.H, c.W}, 100 + k);
    l->infer({x.shape()});
    Rng rng(k);
    l->init_params(rng);
    Tensor& w = l->param("weight")->value;
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = rng.uniform(-1.0f, 1.0f);
    prune_randomly(w, 0.2, 7 + k, c.O > 1 ? 1 : -1);
    Tensor& b = l->param("bias")->value;
    for (int64_t i = 0; i < c.O; ++i) b[i] = rng.uniform(-1.0f, 1.0f);
    const Tensor want = test::conv_ref(c, x, w, b.data());
    for (Isa isa : isas_here()) {
      for (int nt : {1, 2}) {
        set_active_isa(isa);
        omp_set_num_threads(nt);
        set_sparse_policy(SparsePolicy::on);
        l->invalidate();
        const std::string what = "case " + std::to_string(k) + " isa " + isa_name(isa) +
                                 " threads " + std::to_string(nt);
        expect_close(frozen_forward(*l, x), want, what);
        EXPECT_NE(l->last_kernel().find("CSR spmm"), std::string::npos) << what << ": " << l->last_kernel();
        EXPECT_NE(l->last_kernel().find("direct sparse"), std::string::npos) << what;
        // The second call reuses the CSR matrices.
        expect_close(frozen_forward(*l, x), want, what + " (again)");
        set_sparse_policy(SparsePolicy::off);
        expect_close(frozen_forward(*l, x), want, what + " (dense kernels)");
        EXPECT_EQ(l->last_kernel().find("CSR"), std::string::npos) << what;
      }
    }
  }
}

// An eliminated conv (synapse vector elimination) whose truncated weights are also pruned: the
// naive conv on the full weight with the discarded columns zero.
TEST(SparseInference, EliminatedAndPrunedConvMatchesNaive) {
  const ConvCase c{3, 5, 9, 8, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t K = c.C * c.kh * c.kw;
  std::vector<int64_t> kept;
  for (int64_t r = 0; r < K; r += 3) kept.push_back(r);
  std::reverse(kept.begin(), kept.end());   // any order
  Attrs a = test::conv_attrs(c);
  a.set("retained", kept);
  auto l = make_layer("conv", a);
  const Tensor x = random_tensor({c.N, c.C, c.H, c.W}, 3);
  l->infer({x.shape()});
  Tensor& w = l->param("weight")->value;
  ASSERT_EQ(w.shape(), (Shape{c.O, static_cast<int64_t>(kept.size())}));
  Rng rng(5);
  for (int64_t i = 0; i < w.numel(); ++i) w[i] = rng.uniform(-1.0f, 1.0f);
  prune_randomly(w, 0.3, 9);
  Tensor& b = l->param("bias")->value;
  for (int64_t i = 0; i < c.O; ++i) b[i] = rng.uniform(-1.0f, 1.0f);
  Tensor full({c.O, c.C, c.kh, c.kw});
  for (int64_t o = 0; o < c.O; ++o)
    for (size_t p = 0; p < kept.size(); ++p) full[o * K + kept[p]] = w[o * static_cast<int64_t>(kept.size()) + static_cast<int64_t>(p)];
  const Tensor want = test::conv_ref(c, x, full, b.data());
  SparsePolicyGuard policy;
  ThreadsGuard threads;
  set_sparse_policy(SparsePolicy::on);
  for (int nt : {1, 2}) {
    omp_set_num_threads(nt);
    expect_close(frozen_forward(*l, x), want, "threads " + std::to_string(nt));
  }
}

TEST(SparseInference, FcMatchesNaiveOnPrunedWeights) {
  SparsePolicyGuard policy;
  KernelReportGuard report;
  IsaGuard isa_guard;
  ThreadsGuard threads;
  set_kernel_report_enabled(true);
  const int64_t I = 37, O = 19;
  for (bool eliminated : {false, true}) {
    Attrs a = Attrs().set("out_features", O);
    std::vector<int64_t> kept;
    if (eliminated) {
      for (int64_t r = I - 1; r >= 0; r -= 2) kept.push_back(r);
      a.set("retained", kept);
    }
    const int64_t K = eliminated ? static_cast<int64_t>(kept.size()) : I;
    for (int64_t N : {1, 3, 64, 65}) {
      auto l = make_layer("fc", a);
      const Tensor x = random_tensor({N, I}, 11 + N);
      l->infer({x.shape()});
      Tensor& w = l->param("weight")->value;
      Rng rng(N);
      for (int64_t i = 0; i < w.numel(); ++i) w[i] = rng.uniform(-1.0f, 1.0f);
      prune_randomly(w, 0.15, 3 + N, 2);
      Tensor& b = l->param("bias")->value;
      for (int64_t i = 0; i < O; ++i) b[i] = rng.uniform(-1.0f, 1.0f);
      Tensor want({N, O});
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          double s = b[o];
          for (int64_t p = 0; p < K; ++p)
            s += static_cast<double>(w[o * K + p]) * x[n * I + (eliminated ? kept[p] : p)];
          want[n * O + o] = static_cast<float>(s);
        }
      for (Isa isa : isas_here())
        for (int nt : {1, 2}) {
          set_active_isa(isa);
          omp_set_num_threads(nt);
          set_sparse_policy(SparsePolicy::on);
          const std::string what = std::string(eliminated ? "eliminated " : "") + "N " +
                                   std::to_string(N) + " isa " + isa_name(isa) + " threads " +
                                   std::to_string(nt);
          expect_close(frozen_forward(*l, x), want, what);
          EXPECT_NE(l->last_kernel().find("CSR spmm"), std::string::npos) << what;
          set_sparse_policy(SparsePolicy::off);
          expect_close(frozen_forward(*l, x), want, what + " (dense kernels)");
        }
    }
  }
}

// Residual add, ReLU and concat slices fused into sparse convs: a frozen model with the sparse
// kernels against the same model unfrozen (the dense training-path kernels, unfused).
TEST(SparseInference, FusedModelMatchesDense) {
  Model m({4, 9, 10});
  auto conv = [](int out, int k, int pad) {
    return Attrs().set("out_channels", out).set("kernel", k).set("pad", pad);
  };
  int a = m.add("a", "conv", conv(8, 3, 1));
  int ar = m.add("a_relu", "relu", Attrs(), {a});
  int b = m.add("b", "conv", conv(8, 3, 1), {ar});
  int s = m.add("add", "add", Attrs(), {b, ar});
  int r = m.add("relu", "relu", Attrs(), {s});
  int c1 = m.add("c1", "conv", conv(5, 1, 0), {r});
  int c3 = m.add("c3", "conv", conv(6, 3, 1).set("groups", 2), {r});
  m.add("cat", "concat", Attrs().set("axis", 1), {c1, c3});
  m.add("pool", "avgpool", Attrs().set("global", 1));
  m.add("fc", "fc", Attrs().set("out_features", 7));
  m.init_params(3);
  const PruneResult pr = prune_by_magnitude(m, 0.1);
  EXPECT_NEAR(pr.density(), 0.1, 0.01);
  SparsePolicyGuard policy;
  KernelReportGuard report;
  set_kernel_report_enabled(true);
  for (int64_t batch : {1, 3}) {
    const Tensor x = random_tensor({batch, 4, 9, 10}, 21 + batch);
    m.freeze(false);
    const Tensor want = m.forward(x).clone();
    m.freeze(true);
    set_sparse_policy(SparsePolicy::on);
    EXPECT_GT(m.fused_nodes(), 0);
    const Tensor got = m.forward(x).clone();
    expect_close(got, want, "batch " + std::to_string(batch));
    for (const Node& n : m.nodes())
      if (n.layer->type() == "conv" || n.layer->type() == "fc") {
        EXPECT_NE(n.layer->last_kernel().find("CSR spmm"), std::string::npos) << n.name;
      }
    m.freeze(false);
  }
}

TEST(SparseInference, PolicyPicksByDensity) {
  SparsePolicyGuard policy;
  KernelReportGuard report;
  set_kernel_report_enabled(true);
  auto l = make_layer("conv", Attrs().set("out_channels", 8).set("kernel", 3));
  const Tensor x = random_tensor({2, 32, 9, 9}, 1);   // K = 288
  l->infer({x.shape()});
  Rng rng(2);
  l->init_params(rng);
  Tensor& w = l->param("weight")->value;
  const Tensor dense = w.clone();
  auto ran_sparse = [&] {
    l->invalidate();
    frozen_forward(*l, x);
    return l->last_kernel().find("CSR spmm") != std::string::npos;
  };
  const double cut = sparse_auto_density("conv");
  ASSERT_GT(cut, 0.0);
  ASSERT_LT(cut, 1.0);
  set_sparse_policy(SparsePolicy::automatic);
  EXPECT_FALSE(ran_sparse()) << "a dense layer";
  prune_randomly(w, cut / 3, 4);   // ~14 non-zeros per output
  EXPECT_TRUE(ran_sparse()) << "density well under the crossover";
  set_sparse_policy(SparsePolicy::off);
  EXPECT_FALSE(ran_sparse());
  w = dense.clone();
  set_sparse_policy(SparsePolicy::on);
  EXPECT_TRUE(ran_sparse()) << "on: even a dense layer";
  // Under 8 non-zeros per output the layer writes more than it multiplies: dense under auto
  // (a 1x1 conv of 16 channels at 5%), sparse under on.
  {
    auto p = make_layer("conv", Attrs().set("out_channels", 8).set("kernel", 1));
    const Tensor x16 = random_tensor({1, 16, 7, 7}, 2);
    p->infer({x16.shape()});
    Rng r3(3);
    p->init_params(r3);
    prune_randomly(p->param("weight")->value, 0.05, 5);
    set_sparse_policy(SparsePolicy::automatic);
    frozen_forward(*p, x16);
    EXPECT_EQ(p->last_kernel().find("CSR"), std::string::npos) << p->last_kernel();
    set_sparse_policy(SparsePolicy::on);
    p->invalidate();
    frozen_forward(*p, x16);
    EXPECT_NE(p->last_kernel().find("CSR"), std::string::npos) << p->last_kernel();
  }
  set_sparse_policy(SparsePolicy::on);
  // Training never runs sparse, frozen or not.
  Tensor y;
  RunContext train;
  train.training = true;
  l->forward({&x}, y, train);
  EXPECT_EQ(l->last_kernel().find("CSR"), std::string::npos);
  EXPECT_EQ(sparse_policy_from_name("auto"), SparsePolicy::automatic);
  EXPECT_EQ(sparse_policy_from_name("off"), SparsePolicy::off);
  try {
    sparse_policy_from_name("sometimes");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'sometimes'"), std::string::npos) << e.what();
  }
}

// deftnn prune: a trained model pruned to a density, retrained, saved; the saved model runs the
// sparse kernels under --sparse auto and the dense ones under off; bad input is an error.
TEST(SparseCli, PruneWritesAModelThatRunsSparse) {
  const std::string dir = ::testing::TempDir();
  const std::string base = dir + "/prune_base.deft", out = dir + "/prune_out.deft";
  std::string log;
  ASSERT_EQ(test::run_cli("--threads 2 train --net lenet --epochs 1 --limit 256 -o " + base, &log), 0) << log;
  ASSERT_EQ(test::run_cli("--threads 2 prune " + base + " -o " + out +
                              " --density 0.05 --skip-first-conv --layer ip2=0.5 --retrain-epochs 1 --limit 256",
                          &log),
            0)
      << log;
  EXPECT_NE(log.find("conv1"), std::string::npos) << log;
  EXPECT_NE(log.find("retrained"), std::string::npos) << log;
  ASSERT_EQ(test::run_cli("--sparse auto bench " + out + " --batch 2 --iters 1 --warmup 0", &log,
                          "DEFTNN_VERBOSE=1 "),
            0)
      << log;
  // conv1 was skipped (dense), conv2 and ip1 are at 5%, ip2 at 50%.
  auto line = [&](const std::string& node) {
    const size_t at = log.find("deftnn: " + node + " ");
    return at == std::string::npos ? std::string() : log.substr(at, log.find('\n', at) - at);
  };
  EXPECT_EQ(line("conv1").find("CSR"), std::string::npos) << log;
  EXPECT_NE(line("conv2").find("CSR spmm (weight density 5.0%)"), std::string::npos) << log;
  EXPECT_NE(line("ip1").find("CSR spmm"), std::string::npos) << log;
  EXPECT_EQ(line("ip2").find("CSR"), std::string::npos) << log;
  ASSERT_EQ(test::run_cli("info " + out, &log), 0) << log;
  EXPECT_NE(log.find("conv2 5.0% (sparse)"), std::string::npos) << log;
  EXPECT_NE(log.find("ip2 50.0%"), std::string::npos) << log;
  EXPECT_EQ(log.find("ip2 50.0% (sparse)"), std::string::npos) << log;
  ASSERT_EQ(test::run_cli("info " + base, &log), 0) << log;
  EXPECT_EQ(log.find("pruned weights"), std::string::npos) << log;
  ASSERT_EQ(test::run_cli("--sparse off bench " + out + " --batch 2 --iters 1 --warmup 0", &log,
                          "DEFTNN_VERBOSE=1 "),
            0);
  EXPECT_EQ(log.find("CSR"), std::string::npos) << log;
#ifdef DEFTNN_HAVE_ONNX
  // ONNX out (the zeros in dense initialisers) and back in: still 5% dense in conv2.
  const std::string onnx = dir + "/prune_out.onnx";
  ASSERT_EQ(test::run_cli("prune " + base + " -o " + onnx + " --density 0.05 --retrain-epochs 0 --limit 64", &log), 0) << log;
  ASSERT_EQ(test::run_cli("--sparse auto bench " + onnx + " --batch 2 --iters 1 --warmup 0", &log,
                          "DEFTNN_VERBOSE=1 "),
            0)
      << log;
  EXPECT_NE(line("conv2").find("CSR spmm (weight density 5.0%)"), std::string::npos) << log;
  std::remove(onnx.c_str());
#endif
  EXPECT_NE(test::run_cli("prune " + base + " -o " + out + " --layer nosuch=0.1 --limit 64", &log), 0);
  EXPECT_NE(log.find("nosuch"), std::string::npos) << log;
  EXPECT_NE(test::run_cli("prune " + dir + "/missing.deft -o " + out, &log), 0);
  EXPECT_NE(log.find("missing.deft"), std::string::npos) << log;
  EXPECT_NE(test::run_cli("--sparse maybe info lenet", &log), 0);
  std::remove(base.c_str());
  std::remove(out.c_str());
}

}  // namespace
