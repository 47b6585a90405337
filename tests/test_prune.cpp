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

using namespace deftnn;

namespace {

std::vector<Isa> isas_here() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(detected_isa()); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

class IsaGuard {
 public:
  IsaGuard() : saved_(active_isa()) {}
  ~IsaGuard() { set_active_isa(saved_); }

 private:
  Isa saved_;
};

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
  IsaGuard guard;
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
  IsaGuard guard;
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

