// CSR sparse matrix, the spmm dispatcher (threads over rows, kernel per ISA), the portable row
// kernel and the naive reference. See src/gemm/spmm.h for the row-kernel contract.
#include "gemm/spmm.h"

#include <omp.h>

#include <algorithm>
#include <limits>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/prune.h"
#include "gemm/policy_names.h"

namespace deftnn {

CsrMatrix CsrMatrix::from_dense(const float* A, int64_t M, int64_t K, int64_t lda) {
  check(M >= 0 && K >= 0, "CsrMatrix::from_dense: negative size " + std::to_string(M) + " x " +
                              std::to_string(K));
  check(K <= std::numeric_limits<int32_t>::max(),
        "CsrMatrix::from_dense: " + std::to_string(K) + " columns do not fit a 32-bit index");
  check(lda >= K, "CsrMatrix::from_dense: lda " + std::to_string(lda) + " < K " +
                      std::to_string(K));
  CsrMatrix c;
  c.rows = M;
  c.cols = K;
  c.row_ptr.assign(static_cast<size_t>(M) + 1, 0);
  int64_t nnz = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) nnz += A[i * lda + k] != 0.0f;
  c.col_idx.reserve(nnz);
  c.values.reserve(nnz);
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * lda;
    for (int64_t k = 0; k < K; ++k)
      if (a[k] != 0.0f) {
        c.col_idx.push_back(static_cast<int32_t>(k));
        c.values.push_back(a[k]);
      }
    c.row_ptr[i + 1] = static_cast<int64_t>(c.values.size());
  }
  return c;
}

void CsrMatrix::to_dense(float* A, int64_t lda) const {
  check(lda >= cols, "CsrMatrix::to_dense: lda " + std::to_string(lda) + " < cols " +
                         std::to_string(cols));
  for (int64_t i = 0; i < rows; ++i) {
    std::fill(A + i * lda, A + i * lda + cols, 0.0f);
    for (int64_t j = row_ptr[i]; j < row_ptr[i + 1]; ++j) A[i * lda + col_idx[j]] = values[j];
  }
}

int64_t CsrMatrix::bytes() const {
  return static_cast<int64_t>(row_ptr.size() * sizeof(int64_t) + col_idx.size() * sizeof(int32_t) +
                              values.size() * sizeof(float));
}

namespace gemm {

void spmm_rows_portable(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                        int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                        int64_t ldc) {
  constexpr int64_t kTile = 64;
  for (int64_t i = r0; i < r1; ++i) {
    const int64_t j0 = row_ptr[i], j1 = row_ptr[i + 1];
    float* c = C + i * ldc;
    if (N == 1) {
      float s = 0.0f;
      for (int64_t j = j0; j < j1; ++j) s += values[j] * B[col_idx[j] * ldb];
      c[0] = s;
      continue;
    }
    for (int64_t n0 = 0; n0 < N; n0 += kTile) {
      const int64_t w = std::min(kTile, N - n0);
      float acc[kTile] = {};
      for (int64_t j = j0; j < j1; ++j) {
        const float v = values[j];
        const float* b = B + col_idx[j] * ldb + n0;
        for (int64_t t = 0; t < w; ++t) acc[t] += v * b[t];
      }
      std::copy(acc, acc + w, c + n0);
    }
  }
}

SpmmRowsFn spmm_rows_kernel(Isa isa, const char** name) {
  switch (isa) {
    case Isa::avx512_bf16:
    case Isa::avx512:
      if (name) *name = "spmm_avx512";
      return spmm_rows_avx512;
    case Isa::avx2:
      if (name) *name = "spmm_avx2";
      return spmm_rows_avx2;
    case Isa::portable:
      break;
  }
  if (name) *name = "spmm_portable";
  return spmm_rows_portable;
}

}  // namespace gemm

const char* active_spmm_kernel() {
  const char* name = nullptr;
  gemm::spmm_rows_kernel(active_isa(), &name);
  return name;
}

static void check_spmm_args(const char* who, const CsrMatrix& a, int64_t ldb, int64_t N,
                            int64_t ldc) {
  check(N >= 0, std::string(who) + ": N must be >= 0, got " + std::to_string(N));
  check(static_cast<int64_t>(a.row_ptr.size()) == a.rows + 1 &&
            static_cast<int64_t>(a.col_idx.size()) == a.nnz(),
        std::string(who) + ": malformed CSR matrix (" + std::to_string(a.rows) + " rows, " +
            std::to_string(a.row_ptr.size()) + " row pointers, " + std::to_string(a.nnz()) +
            " values, " + std::to_string(a.col_idx.size()) + " column indices)");
  check(ldb >= N && ldc >= N, std::string(who) + ": ldb " + std::to_string(ldb) + " / ldc " +
                                  std::to_string(ldc) + " smaller than N " + std::to_string(N));
}

void spmm(const CsrMatrix& a, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc) {
  check_spmm_args("spmm", a, ldb, N, ldc);
  if (a.rows == 0 || N == 0) return;
  const gemm::SpmmRowsFn fn = gemm::spmm_rows_kernel(active_isa(), nullptr);
  const int threads = std::max(1, omp_get_max_threads());
  // Rows in chunks, several per thread, handed out dynamically: rows differ in non-zero count,
  // and on a shared machine one thread may be preempted.
  const int64_t work = a.nnz() * N + a.rows * N;   // multiply-adds + stores
  const int used = work < 32768 ? 1 : threads;
  const int64_t chunks = std::min<int64_t>(a.rows, static_cast<int64_t>(used) * 8);
  const int64_t rows_per = (a.rows + chunks - 1) / chunks;
  const int64_t nchunks = (a.rows + rows_per - 1) / rows_per;
  const int64_t* rp = a.row_ptr.data();
  const int32_t* ci = a.col_idx.data();
  const float* va = a.values.data();
#pragma omp parallel for num_threads(used) schedule(dynamic, 1) if (used > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t r0 = c * rows_per, r1 = std::min(a.rows, r0 + rows_per);
    fn(rp, ci, va, r0, r1, B, ldb, N, C, ldc);
  }
}

void spmm_ref(const CsrMatrix& a, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc) {
  check_spmm_args("spmm_ref", a, ldb, N, ldc);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t j = a.row_ptr[i]; j < a.row_ptr[i + 1]; ++j)
        s += static_cast<double>(a.values[j]) * B[a.col_idx[j] * ldb + n];
      C[i * ldc + n] = static_cast<float>(s);
    }
}

namespace {
SparsePolicy& sparse_policy_ref() {
  return gemm::process_policy<SparsePolicy>("DEFTNN_SPARSE", "DEFTNN_SPARSE / --sparse");
}
}  // namespace

SparsePolicy sparse_policy() { return sparse_policy_ref(); }
void set_sparse_policy(SparsePolicy p) { sparse_policy_ref() = p; }

SparsePolicy sparse_policy_from_name(const std::string& name) {
  return gemm::policy_from_name<SparsePolicy>(name, "DEFTNN_SPARSE / --sparse");
}

const char* sparse_policy_name(SparsePolicy p) { return gemm::policy_name(p, "?"); }

// Where the sparse kernels beat the engine's dense ones (direct tiles, Winograd, packed sgemm)
// in the model, magnitude-pruned zoo networks, 2 threads, Zen 5, alternated (dense / sparse
// time per layer):
//   LeNet, batch 32: conv1 1.60 / 1.79 / 2.20 at 30 / 20 / 10% (its dense conv runs at a third
//     of the FMA peak), conv2 1.39 / 1.83 / 3.32; ip1 0.90 / 1.15 / 1.63; ip2 (10 x 500) 0.57-0.66
//     at any density.
//   CaffeNet, batch 1: conv2 0.77 / 1.18 / 2.57 at 40 / 25 / 10%, conv3-5 0.56-0.66 / 0.83-0.85
//     / 1.82-2.04, conv1 (stride 4, phase-split copy) 0.98 / 1.28 at 25 / 10%; fc6-8 0.92-1.15
//     / 1.39-1.94 / 4.1-4.7.
//   CaffeNet, batch 32: conv3-5 0.54-0.65 / 1.04-1.16 / 1.68-1.82 at 30 / 15 / 8%, conv2 1.06 /
//     2.02 / 3.41, conv1 1.75 / 2.66 at 15 / 8%; fc6-8 0.80-0.92 / 1.50-1.64 / 2.1-2.8.
// So convs from 15% down, fc layers from 20% down with at least 64 outputs (below that the
// transposes and the single-row-tile kernel cost more than the dense kernel's whole call).
// And at least 8 non-zeros per output on average: with fewer, writing the output is the work,
// and the sparse kernel's separate output pass loses. SqueezeNet pruned to 10%, batch 1: its
// first conv (K = 27, 2.7 non-zeros an output) 0.38x, the 16 -> 64 expand1x1 convs (1.6)
// 0.47-0.57x, the 64-channel squeeze (6.4) 0.79x; from 12.8 (squeeze of 128) 1.07-1.36x.
double weight_density(const float* w, int64_t n) {
  if (n <= 0) return 1.0;
  const int64_t nnz = std::count_if(w, w + n, [](float v) { return v != 0.0f; });
  return static_cast<double>(nnz) / static_cast<double>(n);
}

double sparse_auto_density(const std::string& kind) { return kind == "fc" ? 0.20 : 0.15; }

bool sparse_pays(const std::string& kind, double density, int64_t rows, int64_t depth) {
  switch (sparse_policy()) {
    case SparsePolicy::off: return false;
    case SparsePolicy::on: return true;
    case SparsePolicy::automatic:
      return density <= sparse_auto_density(kind) && density * static_cast<double>(depth) >= 8.0 &&
             (kind != "fc" || rows >= 64);
  }
  return false;
}

}  // namespace deftnn
