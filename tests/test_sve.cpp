// Synapse vector elimination (paper §4.1): the GEMM correlation against the naive two-pass
// formula, the incremental greedy search against a recount-every-round search, constructed
// search cases, the paired-swap reordering, truncation with the K/(K-D) scale, and per-group
// layer plans.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/rng.h"
#include "deftnn/sve.h"

using namespace deftnn;

namespace {

// M x K row-major with row stride ldw (padding filled with NaN: it must never be read).
std::vector<float> random_matrix(int64_t M, int64_t K, int64_t ldw, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(static_cast<size_t>(M * ldw), std::nanf(""));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) w[m * ldw + k] = static_cast<float>(rng.normal());
  return w;
}

// Columns that are noisy mixtures of a few latent columns: many pairs correlate strongly, so the
// search has real decisions to make at moderate thresholds.
std::vector<float> correlated_matrix(int64_t M, int64_t K, int latents, float noise, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> L(static_cast<size_t>(M * latents));
  for (auto& v : L) v = static_cast<float>(rng.normal());
  std::vector<float> w(static_cast<size_t>(M * K));
  for (int64_t k = 0; k < K; ++k) {
    const int64_t a = static_cast<int64_t>(rng.below(latents));
    const float scale = 0.5f + static_cast<float>(rng.uniform());
    const float sign = rng.below(4) == 0 ? -1.0f : 1.0f;
    for (int64_t m = 0; m < M; ++m)
      w[m * K + k] = sign * scale * L[m * latents + a] + noise * static_cast<float>(rng.normal());
  }
  return w;
}

void set_col(std::vector<float>& w, int64_t M, int64_t ld, int64_t k,
             const std::function<float(int64_t)>& f) {
  for (int64_t m = 0; m < M; ++m) w[m * ld + k] = f(m);
}

Tensor rho_from(const std::vector<std::vector<float>>& rows) {
  const int64_t K = static_cast<int64_t>(rows.size());
  Tensor t({K, K});
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) t[i * K + j] = rows[i][j];
  return t;
}

std::vector<int32_t> indices_where(const std::vector<char>& f, char v) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < f.size(); ++i)
    if ((f[i] != 0) == (v != 0)) out.push_back(static_cast<int32_t>(i));
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------- correlation

TEST(SveCorrelation, MatchesTwoPassOnRandomOddSizes) {
  struct Case { int64_t M, K, pad; };
  for (const Case c : {Case{5, 1, 0}, Case{9, 7, 3}, Case{33, 17, 0}, Case{64, 255, 5},
                       Case{300, 17, 1}, Case{2, 7, 0}}) {
    const int64_t ldw = c.K + c.pad;
    const auto w = random_matrix(c.M, c.K, ldw, 100 + c.K);
    const Tensor fast = synapse_correlation(w.data(), c.M, c.K, ldw);
    const Tensor ref = synapse_correlation_ref(w.data(), c.M, c.K, ldw);
    ASSERT_EQ(fast.shape(), (Shape{c.K, c.K}));
    ASSERT_EQ(ref.shape(), (Shape{c.K, c.K}));
    for (int64_t i = 0; i < c.K; ++i) {
      EXPECT_EQ(fast[i * c.K + i], 1.0f);
      for (int64_t j = 0; j < c.K; ++j) {
        ASSERT_NEAR(fast[i * c.K + j], ref[i * c.K + j], 2e-5)
            << "M=" << c.M << " K=" << c.K << " i=" << i << " j=" << j;
        ASSERT_EQ(fast[i * c.K + j], fast[j * c.K + i]) << "not exactly symmetric";
        ASSERT_LE(std::fabs(fast[i * c.K + j]), 1.0f);
      }
    }
  }
}

TEST(SveCorrelation, ConstructedColumns) {
  const int64_t M = 40, K = 9;
  auto w = random_matrix(M, K, K, 7);
  set_col(w, M, K, 1, [&](int64_t m) { return w[m * K + 0]; });                // duplicate of 0
  set_col(w, M, K, 2, [&](int64_t m) { return 3.5f * w[m * K + 0] + 2.0f; });  // affine of 0
  set_col(w, M, K, 3, [&](int64_t m) { return -0.5f * w[m * K + 0]; });        // negated
  set_col(w, M, K, 5, [](int64_t) { return 0.0f; });                          // zero column
  set_col(w, M, K, 6, [](int64_t) { return 4.0f; });                          // constant
  set_col(w, M, K, 7, [&](int64_t m) { return w[m * K + 4] + 1e-3f * static_cast<float>(m % 3); });
  for (const bool fast : {true, false}) {
    const Tensor r = fast ? synapse_correlation(w.data(), M, K, K)
                          : synapse_correlation_ref(w.data(), M, K, K);
    auto at = [&](int i, int j) { return r[i * K + j]; };
    EXPECT_NEAR(at(0, 1), 1.0f, 1e-6);
    EXPECT_NEAR(at(0, 2), 1.0f, 1e-6);
    EXPECT_NEAR(at(1, 2), 1.0f, 1e-6);
    EXPECT_NEAR(at(0, 3), -1.0f, 1e-6);
    EXPECT_GT(at(4, 7), 0.999f);
    EXPECT_LT(at(4, 7), 1.0f);
    // Constant columns: 1 with each other, 0 with everything else, 1 on the diagonal.
    EXPECT_EQ(at(5, 6), 1.0f);
    EXPECT_EQ(at(6, 5), 1.0f);
    EXPECT_EQ(at(5, 5), 1.0f);
    for (const int j : {0, 1, 2, 3, 4, 7, 8}) {
      EXPECT_EQ(at(5, j), 0.0f);
      EXPECT_EQ(at(j, 6), 0.0f);
    }
  }
  // M == 1: every column is constant, so all correlate 1.
  const std::vector<float> one{1.0f, -2.0f, 3.0f};
  const Tensor r1 = synapse_correlation(one.data(), 1, 3, 3);
  for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(r1[i], 1.0f);
}

TEST(SveCorrelation, RejectsBadInput) {
  std::vector<float> w(12, 1.0f);
  w[5] = std::nanf("");
  EXPECT_THROW(synapse_correlation(w.data(), 3, 4, 4), Error);
  EXPECT_THROW(synapse_correlation_ref(w.data(), 3, 4, 4), Error);
  w[5] = 1.0f;
  EXPECT_THROW(synapse_correlation(w.data(), 3, 4, 3), Error);   // ldw < K
  EXPECT_THROW(synapse_correlation(w.data(), 0, 4, 4), Error);
}

// ------------------------------------------------------------------------------------ search

TEST(SveSearch, DiscardsDuplicatesAndScaledCopiesKeepsIndependent) {
  const int64_t M = 64, K = 12;
  auto w = random_matrix(M, K, K, 11);   // columns 0..7 independent
  set_col(w, M, K, 8, [&](int64_t m) { return 2.0f * w[m * K + 0]; });
  set_col(w, M, K, 9, [&](int64_t m) { return w[m * K + 3] + 1.0f; });
  set_col(w, M, K, 10, [&](int64_t m) { return w[m * K + 0]; });
  set_col(w, M, K, 11, [&](int64_t m) { return -w[m * K + 2]; });
  const Tensor rho = synapse_correlation(w.data(), M, K, K);
  SynapseSearchOptions o;
  o.correlation_threshold = 1.0 - 1e-5;
  const auto s = synapse_search(rho, o);
  const std::vector<int32_t> kept_signed{0, 1, 2, 3, 4, 5, 6, 7, 11};
  EXPECT_EQ(indices_where(s.retained, 1), kept_signed);
  EXPECT_EQ(s.representative[8], 0);
  EXPECT_EQ(s.representative[10], 0);
  EXPECT_EQ(s.representative[9], 3);
  EXPECT_EQ(s.representative[11], 11);
  EXPECT_EQ(s.greedy_retained, 9);
  EXPECT_EQ(s.added_for_alignment, 0);
  // Retention order: largest R first (0: {0,8,10}; 3: {3,9}), then the rest by index.
  EXPECT_EQ(s.order, (std::vector<int32_t>{0, 3, 1, 2, 4, 5, 6, 7, 11}));
  // |rho|: the negated copy goes too.
  o.absolute = true;
  const auto a = synapse_search(rho, o);
  EXPECT_EQ(indices_where(a.retained, 1), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(a.representative[11], 2);
}

TEST(SveSearch, TiesGoToLowestIndex) {
  // A chain 0-1-2-3 (neighbours correlate 0.95, others 0): R = 2, 3, 3, 2. Vector 1 wins the
  // tie with 2 and takes 0 and 2; then 3 is alone.
  const Tensor rho = rho_from({{1, .95f, 0, 0}, {.95f, 1, .95f, 0}, {0, .95f, 1, .95f},
                               {0, 0, .95f, 1}});
  SynapseSearchOptions o;
  o.correlation_threshold = 0.9;
  for (const bool ref : {false, true}) {
    const auto s = ref ? synapse_search_ref(rho, o) : synapse_search(rho, o);
    EXPECT_EQ(s.retained, (std::vector<char>{0, 1, 0, 1}));
    EXPECT_EQ(s.order, (std::vector<int32_t>{1, 3}));
    EXPECT_EQ(s.representative, (std::vector<int32_t>{1, 1, 1, 3}));
  }
  // All equal: the first one represents everything.
  const Tensor ones = rho_from({{1, 1, 1}, {1, 1, 1}, {1, 1, 1}});
  EXPECT_EQ(synapse_search(ones, o).retained, (std::vector<char>{1, 0, 0}));
}

TEST(SveSearch, AlphaAboveOneKeepsAll) {
  const auto w = correlated_matrix(32, 50, 3, 0.01f, 5);
  const Tensor rho = synapse_correlation(w.data(), 32, 50, 50);
  SynapseSearchOptions o;
  o.correlation_threshold = 1.0 + 1e-9;
  const auto s = synapse_search(rho, o);
  EXPECT_EQ(s.retained_count(), 50);
  std::vector<int32_t> iota(50);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(s.order, iota);
  // And at a low threshold most of them go.
  o.correlation_threshold = 0.9;
  EXPECT_LE(synapse_search(rho, o).retained_count(), 6);
}

TEST(SveSearch, IncrementalEqualsRecountEveryRound) {
  int decisions = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    const int64_t M = 16 + 7 * static_cast<int64_t>(seed), K = 40 + 23 * static_cast<int64_t>(seed);
    const auto w = correlated_matrix(M, K, 2 + static_cast<int>(seed), 0.4f, seed);
    const Tensor rho = synapse_correlation(w.data(), M, K, K);
    for (const double alpha : {-0.5, 0.0, 0.3, 0.6, 0.8, 0.9, 0.97, 1.0, 1.5}) {
      for (const bool absolute : {false, true}) {
        SynapseSearchOptions o;
        o.correlation_threshold = alpha;
        o.absolute = absolute;
        o.align = 1 + static_cast<int64_t>(seed % 3) * 4;
        const auto fast = synapse_search(rho, o);
        const auto ref = synapse_search_ref(rho, o);
        ASSERT_EQ(fast.retained, ref.retained) << "seed " << seed << " alpha " << alpha;
        ASSERT_EQ(fast.order, ref.order);
        ASSERT_EQ(fast.representative, ref.representative);
        ASSERT_EQ(fast.added_for_alignment, ref.added_for_alignment);
        decisions += static_cast<int>(K - fast.greedy_retained);
      }
    }
  }
  EXPECT_GT(decisions, 1000);   // the cases do discard vectors
}

TEST(SveSearch, RoundsRetainedCountUpToAlignment) {
  const int64_t M = 48, K = 70;
  const auto w = correlated_matrix(M, K, 5, 0.3f, 9);
  const Tensor rho = synapse_correlation(w.data(), M, K, K);
  SynapseSearchOptions o;
  o.correlation_threshold = 0.8;
  const auto base = synapse_search(rho, o);
  ASSERT_GT(base.greedy_retained, 1);
  ASSERT_LT(base.greedy_retained, 60);
  for (const int64_t align : {1, 3, 8, 16, 64, 1000}) {
    o.align = align;
    const auto s = synapse_search(rho, o);
    const int64_t want = std::min<int64_t>(K, (base.greedy_retained + align - 1) / align * align);
    EXPECT_EQ(s.retained_count(), want) << "align " << align;
    EXPECT_EQ(std::count(s.retained.begin(), s.retained.end(), 1), want);
    EXPECT_EQ(s.order, base.order);
    // Everything the greedy step retained stays retained.
    for (const int32_t i : base.order) EXPECT_EQ(s.retained[i], 1);
  }
  // The first vector added back is the discarded one with the lowest max correlation to the
  // greedy retained set.
  o.align = base.greedy_retained + 1;
  const auto s = synapse_search(rho, o);
  ASSERT_EQ(s.added_for_alignment, 1);
  int64_t expect = -1;
  double expect_score = 0;
  for (int64_t j = 0; j < K; ++j) {
    if (base.retained[j]) continue;
    double best = -2;
    for (const int32_t i : base.order) best = std::max(best, static_cast<double>(rho[i * K + j]));
    if (expect < 0 || best < expect_score) expect = j, expect_score = best;
  }
  for (int64_t j = 0; j < K; ++j) EXPECT_EQ(s.retained[j], base.retained[j] || j == expect);
}

// ---------------------------------------------------------------------------- reorder/truncate

TEST(SvePlan, ReorderMatchesReferenceAndMovesOnlyMisplaced) {
  Rng rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t K = 1 + static_cast<int64_t>(rng.below(90));
    std::vector<char> keep(static_cast<size_t>(K));
    for (auto& f : keep) f = rng.below(3) != 0;
    keep[rng.below(K)] = 1;
    const SynapsePlan plan = plan_elimination(keep);
    const int64_t P = std::count(keep.begin(), keep.end(), 1);
    ASSERT_EQ(plan.K, K);
    ASSERT_EQ(plan.kept(), P);
    ASSERT_EQ(plan.eliminated(), K - P);
    EXPECT_DOUBLE_EQ(plan.scale, static_cast<double>(K) / static_cast<double>(P));
    // The reference permutation: the i-th misplaced discarded slot (< P) receives the i-th
    // misplaced retained vector (>= P) and vice versa; every other vector stays put.
    std::vector<int32_t> lo_discarded, hi_retained;
    for (int64_t i = 0; i < K; ++i) {
      if (i < P && !keep[i]) lo_discarded.push_back(static_cast<int32_t>(i));
      if (i >= P && keep[i]) hi_retained.push_back(static_cast<int32_t>(i));
    }
    ASSERT_EQ(lo_discarded.size(), hi_retained.size());
    std::vector<int32_t> ref(static_cast<size_t>(K));
    std::iota(ref.begin(), ref.end(), 0);
    for (size_t n = 0; n < lo_discarded.size(); ++n) {
      ref[lo_discarded[n]] = hi_retained[n];
      ref[hi_retained[n]] = lo_discarded[n];
    }
    EXPECT_EQ(plan.permutation(), ref);
    EXPECT_EQ(plan.swaps.size(), hi_retained.size());   // one swap per misplaced retained
    for (int64_t p = 0; p < K; ++p) EXPECT_EQ(p < P, keep[plan.permutation()[p]] != 0);
    // reorder_rows (the swaps applied to a matrix) lays the rows out as the permutation says,
    // and its first K-D rows are exactly what gather_retained_rows reads.
    const int64_t N = 3, ld = 5;
    const auto in = random_matrix(K, N, ld, 50 + trial);
    const Tensor re = reorder_rows(in.data(), K, N, ld, plan);
    const Tensor ga = gather_retained_rows(in.data(), K, N, ld, plan);
    ASSERT_EQ(ga.shape(), (Shape{P, N}));
    for (int64_t p = 0; p < K; ++p)
      for (int64_t n = 0; n < N; ++n) {
        ASSERT_EQ(re[p * N + n], in[ref[p] * ld + n]);
        if (p < P) {
          ASSERT_EQ(ga[p * N + n], re[p * N + n]);
        }
      }
  }
  EXPECT_THROW(plan_elimination(std::vector<char>{0, 0, 0}), Error);
  EXPECT_THROW(plan_elimination(std::vector<char>{}), Error);
}

TEST(SvePlan, TruncatedScaledGemmEqualsNaiveOverRetainedRows) {
  const int64_t M = 37, K = 131, N = 29;
  const auto w = correlated_matrix(M, K, 9, 0.5f, 21);
  const auto in = random_matrix(K, N, N, 22);
  const Tensor rho = synapse_correlation(w.data(), M, K, K);
  SynapseSearchOptions o;
  o.correlation_threshold = 0.7;
  o.align = 8;
  const auto s = synapse_search(rho, o);
  const SynapsePlan plan = plan_elimination(s.retained);
  const int64_t P = plan.kept();
  ASSERT_GT(plan.eliminated(), K / 4);
  ASSERT_EQ(P % 8, 0);
  const Tensor Wt = truncate_weights(w.data(), M, K, K, plan);
  const Tensor It = gather_retained_rows(in.data(), K, N, N, plan);
  ASSERT_EQ(Wt.shape(), (Shape{M, P}));
  Tensor out({M, N});
  sgemm(false, false, M, N, P, 1.0f, Wt.data(), P, It.data(), N, 0.0f, out.data(), N);
  const double scale = static_cast<double>(K) / static_cast<double>(P);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        if (!s.retained[k]) continue;
        acc += static_cast<double>(w[m * K + k]) * in[k * N + n];
        mag += std::fabs(static_cast<double>(w[m * K + k]) * in[k * N + n]);
      }
      ASSERT_NEAR(out[m * N + n], scale * acc, 1e-5 * scale * mag + 1e-6) << m << "," << n;
    }
}

TEST(SvePlan, KeepingAllIsIdenticalToDense) {
  const int64_t M = 19, K = 45, N = 23;
  const auto w = correlated_matrix(M, K, 2, 0.01f, 31);
  const auto in = random_matrix(K, N, N, 32);
  SynapseSearchOptions o;
  o.correlation_threshold = 2.0;
  const auto s = synapse_search(synapse_correlation(w.data(), M, K, K), o);
  const SynapsePlan plan = plan_elimination(s.retained);
  EXPECT_EQ(plan.kept(), K);
  EXPECT_TRUE(plan.swaps.empty());
  EXPECT_EQ(plan.scale, 1.0);
  const Tensor Wt = truncate_weights(w.data(), M, K, K, plan);
  const Tensor It = gather_retained_rows(in.data(), K, N, N, plan);
  Tensor dense({M, N}), sve({M, N});
  sgemm(false, false, M, N, K, 1.0f, w.data(), K, in.data(), N, 0.0f, dense.data(), N);
  sgemm(false, false, M, N, K, 1.0f, Wt.data(), K, It.data(), N, 0.0f, sve.data(), N);
  for (int64_t i = 0; i < M * N; ++i) ASSERT_EQ(dense[i], sve[i]);
}

// ------------------------------------------------------------------------------------- layers

TEST(SveLayer, GroupedConvSearchesEachGroupSeparately) {
  // Conv [O=16, C/g=3, 2, 2] in 2 groups: M = 8 rows, K = 12 synapse vectors per group. Group 0
  // has scaled copies of one column; group 1 is independent.
  const int64_t O = 16, G = 2, M = 8, K = 12;
  Tensor w({O, 3, 2, 2});
  Rng rng(77);
  for (int64_t i = 0; i < w.numel(); ++i) w[i] = static_cast<float>(rng.normal());
  float* g0 = w.data();
  for (int64_t m = 0; m < M; ++m)
    for (const int64_t k : {4, 7, 11}) g0[m * K + k] = 3.0f * g0[m * K + 1];
  SynapseSearchOptions o;
  o.correlation_threshold = 1.0 - 1e-5;
  const LayerSynapsePlan lp = plan_layer(w, G, o);
  ASSERT_EQ(lp.groups, G);
  ASSERT_EQ(lp.M, M);
  ASSERT_EQ(lp.K, K);
  ASSERT_EQ(lp.plans.size(), 2u);
  EXPECT_EQ(lp.plans[0].kept(), K - 3);
  EXPECT_EQ(lp.plans[1].kept(), K);
  for (int64_t g = 0; g < G; ++g) {
    const float* Wg = w.data() + g * M * K;
    const auto s = synapse_search(synapse_correlation(Wg, M, K, K), o);
    EXPECT_EQ(lp.search[g].retained, s.retained);
    EXPECT_EQ(lp.plans[g].retained, plan_elimination(s.retained).retained);
  }
  const auto wt = truncate_layer_weights(w, lp);
  ASSERT_EQ(wt.size(), 2u);
  EXPECT_EQ(wt[0].shape(), (Shape{M, K - 3}));
  EXPECT_EQ(wt[1].shape(), (Shape{M, K}));
  EXPECT_THROW(plan_layer(w, 3, o), Error);   // 16 channels do not split into 3 groups
}

TEST(SveLayer, FullyConnectedIsOneGroup) {
  const int64_t O = 20, I = 33;
  const auto v = correlated_matrix(O, I, 4, 0.05f, 41);
  const Tensor w = Tensor::from({O, I}, v);
  SynapseSearchOptions o;
  o.correlation_threshold = 0.9;
  o.align = 4;
  const LayerSynapsePlan lp = plan_layer(w, 1, o);
  ASSERT_EQ(lp.plans.size(), 1u);
  EXPECT_EQ(lp.K, I);
  EXPECT_EQ(lp.M, O);
  EXPECT_EQ(lp.plans[0].kept() % 4, 0);
  EXPECT_LT(lp.plans[0].kept(), I);
  EXPECT_THROW(plan_layer(w, 2, o), Error);
}
