// Tests of the blocked sgemm (every ISA path this CPU supports, 1 and 2 threads) against the
// double-accumulating reference sgemm_ref, plus ISA detection / DEFTNN_ISA parsing.
//
// Error metric: |C - C_ref| <= tol * (alpha * sum_k |a_ik| |b_kj| + |beta * C0_ij|) + tiny, with
// tol = 4e-7 * sqrt(K) + 2e-7: fp32 FMA accumulation in blocked order has a rounding error per
// step of at most 2^-24 (~6e-8) of the running |sum|, and random-sign errors grow like sqrt(K)
// (the worst case ~K * 6e-8 is far too pessimistic for these sizes); the factor ~6 margin covers
// the final alpha/beta roundings. A wrong index or a missed edge gives errors of O(1) relative.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "gemm/ukernel.h"

namespace deftnn {
namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad;   // extra leading-dimension columns
};

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

// Restores the active ISA, thread count and blocking after each test.
class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_isa_ = active_isa();
    saved_threads_ = omp_get_max_threads();
  }
  void TearDown() override {
    set_active_isa(saved_isa_);
    omp_set_num_threads(saved_threads_);
    gemm::set_blocking_override(0, 0, 0);
  }
  Isa saved_isa_{};
  int saved_threads_ = 1;
};

// Runs one case and compares; returns a description of the first failure, or "".
std::string run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t arows = c.ta ? c.K : c.M, acols = c.ta ? c.M : c.K;
  const int64_t brows = c.tb ? c.N : c.K, bcols = c.tb ? c.K : c.N;
  const int64_t lda = acols + c.pad, ldb = bcols + c.pad, ldc = c.N + c.pad;
  std::vector<float> A(arows * lda), B(brows * ldb), C0(c.M * ldc);
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (auto& x : C0) x = c.beta == 0.0f ? nan : u(rng);
  std::vector<float> C = C0, R = C0;
  sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
  sgemm_ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, R.data(),
            ldc);
  const double tol = 4e-7 * std::sqrt(static_cast<double>(c.K)) + 2e-7;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double mag = 0.0;
      for (int64_t k = 0; k < c.K; ++k) {
        const float a = c.ta ? A[k * lda + i] : A[i * lda + k];
        const float b = c.tb ? B[j * ldb + k] : B[k * ldb + j];
        mag += std::fabs(static_cast<double>(a) * b);
      }
      mag = std::fabs(c.alpha) * mag + (c.beta == 0.0f ? 0.0 : std::fabs(c.beta * C0[i * ldc + j]));
      const double err = std::fabs(static_cast<double>(C[i * ldc + j]) - R[i * ldc + j]);
      if (!(err <= tol * mag + 1e-30)) {
        return "C(" + std::to_string(i) + "," + std::to_string(j) + ")=" +
               std::to_string(C[i * ldc + j]) + " ref=" + std::to_string(R[i * ldc + j]);
      }
    }
    // Padding columns of C are never written.
    for (int64_t j = c.N; j < ldc; ++j) {
      const float x = C[i * ldc + j], y = C0[i * ldc + j];
      if (!(x == y || (std::isnan(x) && std::isnan(y)))) return "padding column written";
    }
  }
  return "";
}

std::string describe(const Case& c, Isa isa, int threads) {
  return std::string(isa_name(isa)) + " threads=" + std::to_string(threads) + " ta=" +
         std::to_string(c.ta) + " tb=" + std::to_string(c.tb) + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " pad=" + std::to_string(c.pad);
}

// A combinatorial subset of sizes: every size appears in every position, with all four
// transpose combinations and rotating alpha/beta/padding.
std::vector<Case> odd_cases() {
  const int64_t sizes[] = {1, 2, 7, 16, 17, 31, 63, 64, 65, 255};
  const float alphas[] = {1.0f, -0.5f, 2.0f};
  const float betas[] = {0.0f, 1.0f, -1.5f, 0.0f};
  std::vector<Case> cases;
  int r = 0;
  for (int64_t M : sizes)
    for (int64_t N : sizes) {
      // Two K values per (M, N), chosen by rotation so all K appear with all M and N shapes.
      for (int t = 0; t < 2; ++t) {
        const int64_t K = sizes[(r * 3 + t * 5 + M + N) % 10];
        const int combo = (r + t) % 4;
        cases.push_back({(combo & 1) != 0, (combo & 2) != 0, M, N, K, alphas[r % 3],
                         betas[(r + t) % 4], (r % 5 == 0) ? 3 : 0});
        ++r;
      }
    }
  return cases;
}

TEST_F(GemmTest, OddSizesAllIsasAllTransposes) {
  const auto cases = odd_cases();
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      uint32_t seed = 1;
      for (const Case& c : cases) {
        const std::string err = run_case(c, seed++);
        ASSERT_EQ(err, "") << describe(c, isa, threads);
      }
    }
  }
}

// Small KC / MC / NC force several blocks in every loop (K and N splits, beta = 1 on later
// KC blocks, several dynamic work units per thread, rows split and columns split), with teams
// of 1, 2 and 3 threads.
TEST_F(GemmTest, SmallBlockingManyBlocks) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    const auto& cfg = gemm::gemm_config(isa);
    gemm::set_blocking_override(16, cfg.mr * 2, cfg.nr * 2);
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      uint32_t seed = 100;
      for (int combo = 0; combo < 4; ++combo) {
        for (const Case& c : {Case{false, false, 67, 131, 77, 1.0f, 0.0f, 0},
                              Case{false, false, 100, 70, 50, 0.5f, 2.0f, 5},
                              Case{false, false, 5, 300, 33, -1.0f, 1.0f, 1}}) {
          Case cc = c;
          cc.ta = combo & 1;
          cc.tb = combo & 2;
          const std::string err = run_case(cc, seed++);
          ASSERT_EQ(err, "") << describe(cc, isa, threads);
        }
      }
    }
  }
}

// The CaffeNet shapes' edge structure (N = 169, M = 96 / 128) at reduced K, multi-threaded.
TEST_F(GemmTest, SkinnyConvShapes) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int threads : {2, 3}) {
      omp_set_num_threads(threads);
      uint32_t seed = 7;
      for (const Case& c : {Case{false, false, 128, 169, 200, 1.0f, 0.0f, 0},
                            Case{false, false, 96, 3025, 363, 1.0f, 0.0f, 0},
                            Case{false, true, 192, 169, 100, 1.0f, 1.0f, 0}}) {
        const std::string err = run_case(c, seed++);
        ASSERT_EQ(err, "") << describe(c, isa, threads);
      }
    }
  }
}

// N == 1 and M == 1 (GEMV path: fully connected at batch 1, and training backward shapes).
TEST_F(GemmTest, GemvPathsNEqualsOneAndMEqualsOne) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      uint32_t seed = 11;
      for (int combo = 0; combo < 4; ++combo) {
        for (const Case& c : {Case{false, false, 300, 1, 1000, 1.0f, 0.0f, 0},
                              Case{false, false, 257, 1, 33, -2.0f, 0.5f, 3},
                              Case{false, false, 1, 301, 999, 1.0f, 0.0f, 0},
                              Case{false, false, 1, 130, 17, 0.5f, 1.0f, 2},
                              Case{false, false, 1, 1, 100, 1.0f, 1.0f, 0},
                              // several dynamic chunks (64 rows / 1024 columns) and tails
                              Case{false, false, 2100, 1, 37, 1.0f, -1.0f, 1},
                              Case{false, false, 1, 2100, 37, -1.0f, 0.0f, 0}}) {
          Case cc = c;
          cc.ta = combo & 1;
          cc.tb = combo & 2;
          const std::string err = run_case(cc, seed++);
          ASSERT_EQ(err, "") << describe(cc, isa, threads);
        }
      }
    }
  }
}

// Pre-packed A (inference weights): same results as sgemm on every ISA, with several KC
// blocks, odd M, both op(A) layouts and both op(B) layouts.
TEST_F(GemmTest, PackedAMatchesReference) {
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t kc_override : {int64_t{0}, int64_t{40}}) {
      gemm::set_blocking_override(kc_override, 0, 0);
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        uint32_t seed = 300;
        for (const Case& c : {Case{false, false, 37, 70, 131, 1.0f, 0.0f, 0},
                              Case{true, false, 100, 1, 65, 0.5f, 1.0f, 2},
                              Case{false, true, 13, 169, 255, -1.0f, 2.0f, 1}}) {
          std::mt19937 rng(seed++);
          std::uniform_real_distribution<float> u(-1.0f, 1.0f);
          const int64_t lda = (c.ta ? c.M : c.K) + c.pad, ldb = (c.tb ? c.K : c.N) + c.pad;
          const int64_t ldc = c.N + c.pad;
          std::vector<float> A((c.ta ? c.K : c.M) * lda), B((c.tb ? c.N : c.K) * ldb);
          std::vector<float> C(c.M * ldc);
          for (auto& x : A) x = u(rng);
          for (auto& x : B) x = u(rng);
          for (auto& x : C) x = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
          std::vector<float> R = C;
          const PackedA pa(c.ta, c.M, c.K, A.data(), lda);
          EXPECT_EQ(pa.isa(), isa);
          sgemm_packed(pa, c.tb, c.N, c.alpha, B.data(), ldb, c.beta, C.data(), ldc);
          sgemm_ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                    R.data(), ldc);
          const double tol = 4e-7 * std::sqrt(static_cast<double>(c.K)) + 2e-7;
          for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = 0; j < c.N; ++j) {
              // |sum a b| <= K for entries in [-1, 1]; scale tolerance by K + |beta C|.
              const double bound = std::fabs(c.alpha) * c.K + 2.0 * std::fabs(c.beta);
              ASSERT_NEAR(C[i * ldc + j], R[i * ldc + j], tol * bound)
                  << describe(c, isa, threads) << " kc_override=" << kc_override << " at " << i
                  << "," << j;
            }
        }
      }
    }
  }
  EXPECT_THROW(PackedA(false, 0, 5, nullptr, 5), Error);
}

// sgemm_gather / sgemm_packed_gather (synapse vector elimination's operand, gathered by the
// packing step) against sgemm_ref on matrices gathered by hand: every ISA, 1-3 threads, all
// transposes, several KC blocks (the index is cut with them), GEMV shapes, and three kinds of
// index: in place but for a few swapped rows (what the pairwise reorder leaves), a random
// subset in random order (no runs), and reversed.
TEST_F(GemmTest, GatheredOperandsMatchReferenceOnTheRetainedRows) {
  auto make_index = [](int kind, int64_t K, int64_t full, std::mt19937& rng) {
    std::vector<int64_t> all(full);
    for (int64_t i = 0; i < full; ++i) all[i] = i;
    std::vector<int64_t> idx;
    if (kind == 0) {   // identity on the first K, a few entries swapped for discarded ones
      idx.assign(all.begin(), all.begin() + K);
      for (int64_t t = 0; t < std::min<int64_t>(3, full - K); ++t) idx[(t * 7) % K] = K + t;
    } else if (kind == 1) {
      std::shuffle(all.begin(), all.end(), rng);
      idx.assign(all.begin(), all.begin() + K);
    } else {
      for (int64_t k = 0; k < K; ++k) idx.push_back(full - 1 - k);
    }
    return idx;
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (int64_t kc_override : {int64_t{0}, int64_t{16}}) {
      gemm::set_blocking_override(kc_override, 0, 0);
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        uint32_t seed = 500;
        for (const Case& c0 : {Case{false, true, 37, 32, 61, 1.0f, 0.0f, 0},
                               Case{false, true, 500, 17, 255, 1.0f, 1.0f, 0},
                               Case{false, false, 7, 65, 33, -0.5f, 0.0f, 2},
                               Case{false, false, 63, 1, 40, 1.0f, 0.0f, 0},
                               Case{false, false, 1, 31, 17, 2.0f, 1.0f, 1}}) {
          for (int combo = 0; combo < 4; ++combo) {
            Case c = c0;
            c.ta = combo & 1;
            c.tb = combo & 2;
            const int kind = (combo + static_cast<int>(seed)) % 3;
            std::mt19937 rng(seed++);
            std::uniform_real_distribution<float> u(-1.0f, 1.0f);
            const int64_t KF = c.K + 5;   // the stored matrices are 5 deeper than K
            const std::vector<int64_t> ai = make_index(kind, c.K, KF, rng);
            const std::vector<int64_t> bi = make_index((kind + 1) % 3, c.K, KF, rng);
            // Stored (wider) matrices, and the gathered ones the reference multiplies.
            const int64_t lda = (c.ta ? c.M : KF) + c.pad, ldb = (c.tb ? KF : c.N) + c.pad;
            std::vector<float> A((c.ta ? KF : c.M) * lda), B((c.tb ? c.N : KF) * ldb);
            for (auto& x : A) x = u(rng);
            for (auto& x : B) x = u(rng);
            std::vector<float> Ag(c.M * c.K), Bg(c.K * c.N);
            for (int64_t i = 0; i < c.M; ++i)
              for (int64_t k = 0; k < c.K; ++k)
                Ag[i * c.K + k] = c.ta ? A[ai[k] * lda + i] : A[i * lda + ai[k]];
            for (int64_t k = 0; k < c.K; ++k)
              for (int64_t j = 0; j < c.N; ++j)
                Bg[k * c.N + j] = c.tb ? B[j * ldb + bi[k]] : B[bi[k] * ldb + j];
            const int64_t ldc = c.N + c.pad;
            std::vector<float> C0(c.M * ldc);
            for (auto& x : C0) x = c.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
            std::vector<float> R = C0, C = C0, P = C0;
            sgemm_ref(false, false, c.M, c.N, c.K, c.alpha, Ag.data(), c.K, Bg.data(), c.N, c.beta,
                      R.data(), ldc);
            sgemm_gather(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, ai.data(), B.data(),
                         ldb, bi.data(), c.beta, C.data(), ldc);
            // Packed weights (A gathered by hand, as a truncated layer's weights are) with B
            // gathered in the packing step.
            const PackedA pa(false, c.M, c.K, Ag.data(), c.K);
            sgemm_packed_gather(pa, c.tb, c.N, c.alpha, B.data(), ldb, bi.data(), c.beta, P.data(),
                                ldc);
            const double tol = 4e-7 * std::sqrt(static_cast<double>(c.K)) + 2e-7;
            const double bound = std::fabs(c.alpha) * c.K + 2.0 * std::fabs(c.beta);
            for (int64_t i = 0; i < c.M; ++i)
              for (int64_t j = 0; j < c.N; ++j) {
                ASSERT_NEAR(C[i * ldc + j], R[i * ldc + j], tol * bound)
                    << describe(c, isa, threads) << " kind=" << kind << " kc=" << kc_override
                    << " at " << i << "," << j;
                ASSERT_NEAR(P[i * ldc + j], R[i * ldc + j], tol * bound)
                    << "packed " << describe(c, isa, threads) << " kind=" << kind
                    << " kc=" << kc_override << " at " << i << "," << j;
              }
          }
        }
      }
    }
  }
  // An index outside the stored matrix (where its extent is known) is an error, not a read.
  std::vector<float> A(4 * 6, 1.0f), B(6 * 4, 1.0f), C(16);
  const std::vector<int64_t> bad{0, 1, 6};
  EXPECT_THROW(sgemm_gather(false, false, 4, 4, 3, 1.0f, A.data(), 6, bad.data(), B.data(), 4,
                            nullptr, 0.0f, C.data(), 4),
               Error);
  const std::vector<int64_t> neg{0, -1, 2};
  EXPECT_THROW(sgemm_gather(false, false, 4, 4, 3, 1.0f, A.data(), 6, nullptr, B.data(), 4,
                            neg.data(), 0.0f, C.data(), 4),
               Error);
}

// K is cut into equal KC blocks no deeper than the limit, covering K exactly.
TEST(GemmBlocking, EqualKcBlocksCoverK) {
  EXPECT_EQ(gemm::block_kc(1200, 1024), 600);   // not 1024 + 176
  EXPECT_EQ(gemm::block_kc(2304, 1024), 768);
  EXPECT_EQ(gemm::block_kc(363, 1024), 363);
  EXPECT_EQ(gemm::block_kc(1024, 1024), 1024);
  EXPECT_EQ(gemm::block_kc(1025, 1024), 513);
  EXPECT_EQ(gemm::block_kc(1, 384), 1);
  for (int64_t K : {1, 7, 17, 255, 383, 385, 1728, 9216})
    for (int64_t lim : {1, 16, 40, 384, 1024}) {
      const int64_t kc = gemm::block_kc(K, lim);
      const int64_t blocks = (K + lim - 1) / lim;
      EXPECT_LE(kc, lim);
      EXPECT_GE(kc * blocks, K);                 // the blocks cover K...
      EXPECT_LT(kc * (blocks - 1), K);           // ...and the last one is not empty
      EXPECT_EQ((K + kc - 1) / kc, blocks);      // as few blocks as the limit allows
    }
}

TEST_F(GemmTest, ZeroKAndZeroAlphaScaleC) {
  std::vector<float> C = {std::numeric_limits<float>::quiet_NaN(), 2.0f, 3.0f, 4.0f};
  float dummy = 0.0f;
  sgemm(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 0.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f}));
  C = {1.0f, 2.0f, 3.0f, 4.0f};
  std::vector<float> A(4, 1.0f), B(4, 1.0f);
  sgemm(false, false, 2, 2, 2, 0.0f, A.data(), 2, B.data(), 2, 2.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{2.0f, 4.0f, 6.0f, 8.0f}));
}

TEST_F(GemmTest, RejectsBadArguments) {
  float x[4] = {};
  EXPECT_THROW(sgemm(false, false, -1, 2, 2, 1.0f, x, 2, x, 2, 0.0f, x, 2), Error);
  EXPECT_THROW(sgemm(false, false, 2, 2, 2, 1.0f, x, 1, x, 2, 0.0f, x, 2), Error);
}

TEST(GemmIsa, NamesRoundTripAndJunkIsRejected) {
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16})
    EXPECT_EQ(isa_from_name(isa_name(i)), i);
  EXPECT_THROW(isa_from_name("avx3"), Error);
  EXPECT_THROW(isa_from_name(""), Error);
  EXPECT_THROW(isa_from_name("AVX2"), Error);
}

TEST(GemmIsa, EnvironmentValueCapsAndFallsBack) {
  std::string why;
  EXPECT_EQ(resolve_isa(nullptr, Isa::avx512, &why), Isa::avx512);
  EXPECT_EQ(resolve_isa("", Isa::avx2, &why), Isa::avx2);
  EXPECT_EQ(resolve_isa("avx2", Isa::avx512_bf16, &why), Isa::avx2);
  EXPECT_EQ(why.rfind("warning", 0), std::string::npos);
  EXPECT_EQ(resolve_isa("portable", Isa::avx2, &why), Isa::portable);
  // Above what the CPU has: warning, detected ISA.
  EXPECT_EQ(resolve_isa("avx512", Isa::avx2, &why), Isa::avx2);
  EXPECT_EQ(why.rfind("warning", 0), 0u) << why;
  // Junk: warning, detected ISA.
  EXPECT_EQ(resolve_isa("fastest", Isa::avx512, &why), Isa::avx512);
  EXPECT_EQ(why.rfind("warning", 0), 0u) << why;
  EXPECT_NE(why.find("unknown ISA"), std::string::npos) << why;
}

TEST(GemmIsa, SetActiveIsaRejectsUnsupportedAndEveryIsaHasAConfig) {
  const Isa saved = active_isa();
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16}) {
    const auto& cfg = gemm::gemm_config(i);
    EXPECT_EQ(cfg.isa, i);
    EXPECT_GT(cfg.mr, 0);
    EXPECT_EQ(cfg.nr % 8, 0);
    if (static_cast<int>(i) > static_cast<int>(detected_isa())) {
      EXPECT_THROW(set_active_isa(i), Error);
    } else {
      set_active_isa(i);
      EXPECT_EQ(active_isa(), i);
    }
  }
  set_active_isa(saved);
}

}  // namespace
}  // namespace deftnn
