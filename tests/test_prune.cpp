// The magnitude-pruning baseline (§5.8): the CSR kernel against its naive reference and against a
// dense GEMM on the same matrix, on every ISA path this CPU has; pruning's selection, ties and
// skips; retraining that keeps pruned weights at zero; a pruned fc layer run by the model's dense
// path against the CSR kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/prune.h"
#include "deftnn/rng.h"
#include "test_util.h"

using namespace deftnn;

namespace {

std::vector<Isa> isas_here() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}


std::vector<float> sparse_matrix(int64_t M, int64_t K, double density, Rng& rng) {
  std::vector<float> a(static_cast<size_t>(M * K), 0.0f);
  for (auto& v : a)
    if (rng.uniform() < density) v = rng.uniform(-1.0f, 1.0f);
  return a;
}

}  // namespace

TEST(Spmm, CsrFromDenseDropsExactZerosAndRoundTrips) {
  const int64_t M = 3, K = 5, lda = 7;
  std::vector<float> a(M * lda, 9.0f);   // padding beyond K must be ignored
  const float vals[M][K] = {{0, 1.5f, -0.0f, 0, 2}, {0, 0, 0, 0, 0}, {-3, 0, 1e-30f, 0, 0}};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) a[i * lda + k] = vals[i][k];
  CsrMatrix c = CsrMatrix::from_dense(a.data(), M, K, lda);
  EXPECT_EQ(c.nnz(), 4);
  EXPECT_EQ(c.row_ptr, (std::vector<int64_t>{0, 2, 2, 4}));
  EXPECT_EQ(c.col_idx, (std::vector<int32_t>{1, 4, 0, 2}));
  EXPECT_NEAR(c.density(), 4.0 / 15.0, 1e-12);
  std::vector<float> back(M * K, -1.0f);
  c.to_dense(back.data(), K);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) EXPECT_EQ(back[i * K + k], vals[i][k]) << i << "," << k;
  EXPECT_THROW(CsrMatrix::from_dense(a.data(), M, K, K - 1), Error);
}

TEST(Spmm, MatchesReferenceAndDenseGemmOnEveryIsa) {
  test::IsaGuard guard;
  const int64_t sizes[] = {1, 7, 17, 63, 255};
  const double densities[] = {0.0, 0.01, 0.10, 1.0};
  const std::vector<Isa> isas = isas_here();
  Rng rng(42);
  for (int64_t M : sizes)
    for (int64_t K : sizes)
      for (int64_t N : sizes)
        for (double d : densities) {
          std::vector<float> a = sparse_matrix(M, K, d, rng);
          const CsrMatrix csr = CsrMatrix::from_dense(a.data(), M, K, K);
          const int64_t ldb = N + 3, ldc = N + 5;   // strides wider than N
          std::vector<float> B(static_cast<size_t>(K * ldb));
          for (auto& v : B) v = rng.uniform(-1.0f, 1.0f);
          std::vector<float> R(static_cast<size_t>(M * ldc), 7.0f), D(R), tol(R);
          spmm_ref(csr, B.data(), ldb, N, R.data(), ldc);
          sgemm_ref(false, false, M, N, K, 1.0f, a.data(), K, B.data(), ldb, 0.0f, D.data(), ldc);
          // fp32 accumulation error bound: a few ulps of sum |a_ij * b_jn|.
          for (int64_t i = 0; i < M; ++i)
            for (int64_t n = 0; n < N; ++n) {
              double mag = 0;
              for (int64_t j = csr.row_ptr[i]; j < csr.row_ptr[i + 1]; ++j)
                mag += std::fabs(csr.values[j] * B[csr.col_idx[j] * ldb + n]);
              tol[i * ldc + n] = static_cast<float>(4e-7 * mag + 1e-30);
            }
          for (Isa isa : isas) {
            set_active_isa(isa);
            std::vector<float> C(static_cast<size_t>(M * ldc), 7.0f);
            spmm(csr, B.data(), ldb, N, C.data(), ldc);
            for (int64_t i = 0; i < M; ++i) {
              for (int64_t n = 0; n < N; ++n) {
                const float c = C[i * ldc + n], t = tol[i * ldc + n];
                ASSERT_NEAR(c, R[i * ldc + n], t)
                    << isa_name(isa) << " M=" << M << " K=" << K << " N=" << N << " d=" << d
                    << " at " << i << "," << n;
                ASSERT_NEAR(c, D[i * ldc + n], t) << isa_name(isa) << " vs dense";
              }
              for (int64_t n = N; n < ldc; ++n)
                ASSERT_EQ(C[i * ldc + n], 7.0f) << "wrote past N: " << isa_name(isa);
            }
          }
        }
}

TEST(Spmm, SpmvWithStridedColumnMatchesReference) {
  test::IsaGuard guard;
  Rng rng(3);
  const int64_t M = 63, K = 255, ldb = 4;
  std::vector<float> a = sparse_matrix(M, K, 0.1, rng);
  const CsrMatrix csr = CsrMatrix::from_dense(a.data(), M, K, K);
  std::vector<float> B(K * ldb);
  for (auto& v : B) v = rng.uniform(-1.0f, 1.0f);
  for (Isa isa : isas_here()) {
    set_active_isa(isa);
    std::vector<float> C(M * 2), R(M * 2);
    spmm(csr, B.data(), ldb, 1, C.data(), 2);
    spmm_ref(csr, B.data(), ldb, 1, R.data(), 2);
    for (int64_t i = 0; i < M; ++i) ASSERT_NEAR(C[i * 2], R[i * 2], 1e-5) << isa_name(isa);
  }
}

namespace {

// conv (1->4, 3x3) -> relu -> flatten -> fc 32 -> relu -> fc 4, on 1x8x8 inputs.
Model small_net(uint64_t seed) {
  Model m({1, 8, 8});
  m.add("conv1", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
  m.add("relu1", "relu", Attrs());
  m.add("flat", "flatten", Attrs());
  m.add("fc1", "fc", Attrs().set("out_features", 32));
  m.add("relu2", "relu", Attrs());
  m.add("fc2", "fc", Attrs().set("out_features", 4));
  m.init_params(seed);
  return m;
}

std::vector<float> weights_of(Model& m, const std::string& name) {
  const Tensor& w = m.nodes()[m.find(name)].layer->param("weight")->value;
  return std::vector<float>(w.data(), w.data() + w.numel());
}

// Indices a correct per-layer pruning keeps: stable sort by |w| descending.
std::vector<uint8_t> expected_keep(const std::vector<float>& w, int64_t kept) {
  std::vector<int64_t> idx(w.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return std::fabs(w[a]) > std::fabs(w[b]); });
  std::vector<uint8_t> keep(w.size(), 0);
  for (int64_t i = 0; i < kept; ++i) keep[idx[i]] = 1;
  return keep;
}

}  // namespace

TEST(Prune, KeepsExactlyTheLargestFractionPerLayer) {
  Model m = small_net(7);
  // Make ties: fc2's weights take only three magnitudes, so the cut falls inside a tie group.
  Tensor& w2 = m.nodes()[m.find("fc2")].layer->param("weight")->value;
  for (int64_t i = 0; i < w2.numel(); ++i) w2[i] = (i % 3 == 0 ? 0.5f : 0.25f) * (i % 2 ? -1.0f : 1.0f);
  std::vector<std::vector<float>> before;
  for (const char* n : {"conv1", "fc1", "fc2"}) before.push_back(weights_of(m, n));
  const double density = 0.3;
  PruneResult r = prune_by_magnitude(m, density);
  ASSERT_EQ(r.layers.size(), 3u);
  int li = 0;
  for (const char* n : {"conv1", "fc1", "fc2"}) {
    const std::vector<float>& w0 = before[li];
    const LayerMask& lm = r.layers[li++];
    EXPECT_EQ(lm.name, n);
    const int64_t total = static_cast<int64_t>(w0.size());
    const int64_t want = std::llround(density * total);
    EXPECT_EQ(lm.total, total);
    EXPECT_EQ(lm.kept, want) << n;
    EXPECT_EQ(lm.keep, expected_keep(w0, want)) << n << ": wrong weights kept (ties by index)";
    const std::vector<float> w1 = weights_of(m, n);
    for (int64_t i = 0; i < total; ++i) {
      if (lm.keep[i]) EXPECT_EQ(w1[i], w0[i]);
      else EXPECT_EQ(w1[i], 0.0f);
    }
  }
  // Biases untouched.
  EXPECT_NE(m.nodes()[m.find("fc1")].layer->param("bias"), nullptr);
  // Same weights, same masks (deterministic).
  Model m2 = small_net(7);
  Tensor& w2b = m2.nodes()[m2.find("fc2")].layer->param("weight")->value;
  for (int64_t i = 0; i < w2b.numel(); ++i) w2b[i] = (i % 3 == 0 ? 0.5f : 0.25f) * (i % 2 ? -1.0f : 1.0f);
  PruneResult r2 = prune_by_magnitude(m2, density);
  for (size_t l = 0; l < r.layers.size(); ++l) EXPECT_EQ(r2.layers[l].keep, r.layers[l].keep);
}

TEST(Prune, SkipsFirstConvLastFcAndPerKindDensities) {
  Model m = small_net(9);
  PruneOptions o;
  o.skip_first_conv = true;
  o.skip_last_fc = true;
  PruneResult r = prune_by_magnitude(m, 0.1, o);
  EXPECT_EQ(r.layers[0].kept, r.layers[0].total);
  EXPECT_EQ(r.layers[2].kept, r.layers[2].total);
  EXPECT_EQ(r.layers[1].kept, std::llround(0.1 * r.layers[1].total));

  Model m2 = small_net(9);
  PruneOptions o2;
  o2.conv_density = 0.5;
  o2.fc_density = 0.2;
  o2.layer_density = {{"fc2", 1.0}};
  PruneResult r2 = prune_by_magnitude(m2, 0.9, o2);
  EXPECT_EQ(r2.layers[0].kept, std::llround(0.5 * r2.layers[0].total));
  EXPECT_EQ(r2.layers[1].kept, std::llround(0.2 * r2.layers[1].total));
  EXPECT_EQ(r2.layers[2].kept, r2.layers[2].total);
  EXPECT_THROW(prune_by_magnitude(m2, 1.5), Error);
  o2.layer_density = {{"relu1", 0.5}};
  EXPECT_THROW(prune_by_magnitude(m2, 0.5, o2), Error);
}

TEST(Prune, GlobalThresholdKeepsLargestOverall) {
  Model m = small_net(11);
  std::vector<float> all;
  for (const char* n : {"conv1", "fc1", "fc2"}) {
    auto w = weights_of(m, n);
    all.insert(all.end(), w.begin(), w.end());
  }
  PruneOptions o;
  o.per_layer = false;
  PruneResult r = prune_by_magnitude(m, 0.25, o);
  EXPECT_EQ(r.kept(), std::llround(0.25 * static_cast<double>(all.size())));
  std::vector<uint8_t> keep;
  for (const auto& l : r.layers) keep.insert(keep.end(), l.keep.begin(), l.keep.end());
  EXPECT_EQ(keep, expected_keep(all, r.kept()));
}

TEST(Prune, RetrainingKeepsPrunedWeightsAtZeroAndMovesTheRest) {
  Model m = small_net(5);
  Dataset d;
  const int64_t n = 256;
  d.images = Tensor({n, 1, 8, 8});
  d.num_classes = 4;
  Rng rng(1);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t label = static_cast<int32_t>(i % 4);
    d.labels.push_back(label);
    for (int64_t p = 0; p < 64; ++p)
      d.images[i * 64 + p] = rng.uniform(0.0f, 0.5f) + ((p / 16) == label ? 0.5f : 0.0f);
  }
  PruneResult r = prune_by_magnitude(m, 0.3);
  std::vector<std::vector<float>> before;
  for (const auto& l : r.layers) before.push_back(weights_of(m, l.name));
  TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 32;
  cfg.lr = 0.05;
  cfg.progress = false;
  auto hist = retrain_pruned(m, r, d, &d, cfg);
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_GE(hist.back().test_top1, 0.0);
  for (size_t li = 0; li < r.layers.size(); ++li) {
    const LayerMask& lm = r.layers[li];
    const std::vector<float> w = weights_of(m, lm.name);
    int64_t changed = 0;
    for (int64_t i = 0; i < lm.total; ++i) {
      if (!lm.keep[i]) ASSERT_EQ(w[i], 0.0f) << lm.name << " weight " << i << " revived";
      else changed += w[i] != before[li][i];
    }
    EXPECT_GT(changed, lm.kept / 2) << lm.name << ": retraining left the kept weights alone";
  }
}

TEST(Prune, PrunedFcDenseForwardEqualsCsrKernel) {
  test::IsaGuard guard;
  Model m({96});
  m.add("fc", "fc", Attrs().set("out_features", 37));
  m.init_params(3);
  Tensor& b = m.nodes()[0].layer->param("bias")->value;
  for (int64_t o = 0; o < b.numel(); ++o) b[o] = 0.01f * static_cast<float>(o);
  prune_by_magnitude(m, 0.1);
  const Tensor& w = m.nodes()[0].layer->param("weight")->value;   // [37, 96]
  const CsrMatrix csr = CsrMatrix::from_dense(w.data(), 37, 96, 96);
  EXPECT_LE(csr.nnz(), std::llround(0.1 * 37 * 96));
  for (int64_t N : {1, 5}) {
    Tensor x({N, 96});
    Rng rng(N);
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1.0f, 1.0f);
    const Tensor y = m.forward(x).clone();
    // CSR path: C (37 x N) = W_csr * X^T, Y[n][o] = C[o][n] + b[o].
    std::vector<float> xt(96 * N), c(37 * N);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < 96; ++k) xt[k * N + n] = x[n * 96 + k];
    for (Isa isa : isas_here()) {
      set_active_isa(isa);
      spmm(csr, xt.data(), N, N, c.data(), N);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < 37; ++o)
          ASSERT_NEAR(y[n * 37 + o], c[o * N + n] + b[o], 1e-5) << isa_name(isa) << " N=" << N;
    }
  }
}
