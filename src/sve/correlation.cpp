// Correlation matrix of synapse vectors (paper Eq. 6): the fast path (centre + normalise once,
// one K x K GEMM) and the naive two-pass reference.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/sve.h"

namespace deftnn {

namespace {

void check_matrix(const float* W, int64_t M, int64_t K, int64_t ldw, const char* fn) {
  check(W != nullptr || M * K == 0, std::string(fn) + ": null weight pointer");
  check(M >= 1 && K >= 1, std::string(fn) + ": need M >= 1 and K >= 1, got M=" +
                              std::to_string(M) + " K=" + std::to_string(K));
  check(ldw >= K, std::string(fn) + ": ldw=" + std::to_string(ldw) + " < K=" + std::to_string(K));
  check(K <= INT32_MAX, std::string(fn) + ": K too large");
}

// Per-column mean in double; throws on a non-finite weight.
std::vector<double> column_means(const float* W, int64_t M, int64_t K, int64_t ldw,
                                 const char* fn) {
  std::vector<double> mean(static_cast<size_t>(K), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const float* row = W + m * ldw;
    for (int64_t k = 0; k < K; ++k) {
      if (!std::isfinite(row[k]))
        throw Error(std::string(fn) + ": non-finite weight at row " + std::to_string(m) +
                    ", column " + std::to_string(k));
      mean[k] += row[k];
    }
  }
  for (auto& v : mean) v /= static_cast<double>(M);
  return mean;
}

// The conventions for constant columns, the exact diagonal, the clamp and exact symmetry.
void finish(float* rho, int64_t K, const std::vector<char>& constant) {
  for (int64_t i = 0; i < K; ++i) {
    float* ri = rho + i * K;
    for (int64_t j = i + 1; j < K; ++j) {
      float v;
      if (constant[i] || constant[j]) {
        v = (constant[i] && constant[j]) ? 1.0f : 0.0f;
      } else {
        v = std::clamp(ri[j], -1.0f, 1.0f);
      }
      ri[j] = v;
      rho[j * K + i] = v;
    }
    ri[i] = 1.0f;
  }
}

}  // namespace

Tensor synapse_correlation(const float* W, int64_t M, int64_t K, int64_t ldw) {
  check_matrix(W, M, K, ldw, "synapse_correlation");
  const std::vector<double> mean = column_means(W, M, K, ldw, "synapse_correlation");
  // Centred sums of squares, in double.
  std::vector<double> ss(static_cast<size_t>(K), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const float* row = W + m * ldw;
    for (int64_t k = 0; k < K; ++k) {
      const double d = row[k] - mean[k];
      ss[k] += d * d;
    }
  }
  std::vector<char> constant(static_cast<size_t>(K));
  std::vector<double> inv(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    constant[k] = ss[k] == 0.0;
    inv[k] = constant[k] ? 0.0 : 1.0 / std::sqrt(ss[k]);
  }
  // Z (M x K): unit-norm centred columns (zero for constant ones); rho = Z^T Z.
  Tensor Z({M, K});
  float* z = Z.data();
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* row = W + m * ldw;
    float* zr = z + m * K;
    for (int64_t k = 0; k < K; ++k) zr[k] = static_cast<float>((row[k] - mean[k]) * inv[k]);
  }
  Tensor rho({K, K});
  sgemm(/*trans_a=*/true, /*trans_b=*/false, K, K, M, 1.0f, z, K, z, K, 0.0f, rho.data(), K);
  finish(rho.data(), K, constant);
  return rho;
}

Tensor synapse_correlation_ref(const float* W, int64_t M, int64_t K, int64_t ldw) {
  check_matrix(W, M, K, ldw, "synapse_correlation_ref");
  const std::vector<double> mean = column_means(W, M, K, ldw, "synapse_correlation_ref");
  auto at = [&](int64_t m, int64_t k) { return static_cast<double>(W[m * ldw + k]); };
  std::vector<double> var(static_cast<size_t>(K), 0.0);
  std::vector<char> constant(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    double s = 0.0;
    for (int64_t m = 0; m < M; ++m) s += (at(m, k) - mean[k]) * (at(m, k) - mean[k]);
    var[k] = s / static_cast<double>(M);
    constant[k] = s == 0.0;
  }
  Tensor rho({K, K});
  float* r = rho.data();
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      if (constant[i] || constant[j]) {
        r[i * K + j] = (constant[i] && constant[j]) ? 1.0f : 0.0f;
        continue;
      }
      double cov = 0.0;
      for (int64_t m = 0; m < M; ++m) cov += (at(m, i) - mean[i]) * (at(m, j) - mean[j]);
      cov /= static_cast<double>(M);
      r[i * K + j] = static_cast<float>(std::clamp(cov / std::sqrt(var[i] * var[j]), -1.0, 1.0));
    }
    r[i * K + i] = 1.0f;
  }
  return rho;
}

}  // namespace deftnn
