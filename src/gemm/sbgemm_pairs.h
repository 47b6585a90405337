// bf16 GEMM on K-pair words with the weights broadcast (avx512_bf16): a 12 x 32 vdpbf16ps tile,
// 12 rows of A (weights) broadcast as K-pair words, 32 columns of B as two vectors of K-pair
// words. The orientation of the fp32 sgemm tile: each weight word feeds 32 columns, so weights
// streaming from DRAM (fully connected layers at batch 16-32) cost 48 bytes per 24 vdpbf16ps,
// against 128 for the fission tile (32 rows as vectors x 12 broadcast columns), whose first pass
// over a strip waited on DRAM. Used by Winograd's bf16 variant (winograd.h: its 16 U_xi are
// Bf16RowStrips) and by native bf16 fully connected layers at batches of whole 32-sample panels
// (ops/fc.cpp, FC::row_strips).
//
// Layouts (word = bf16(x[2kp]) | bf16(x[2kp + 1]) << 16, an odd K's last high half 0):
//   A strip of 12 rows:  word (kp, i) at a[kp * 12 + i] (rows past M are 0);
//   B panel of 32 columns: word (kp, j) at b[kp * 32 + j] (columns past N are 0);
//   C: c[i * ldc + j] for i < m, j < n, overwritten with the fp32 sums.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "deftnn/formats.h"

namespace deftnn::gemm {

void sbgemm_pairs_12x32__avx512bf16(int64_t KP, const uint32_t* a, const uint32_t* b, float* c,
                                    int64_t ldc, int m, int n);

// Rows [0, n) of X (row j: K floats at X + j * ldx) as a 32-column B panel, K pairs [kp0, kp1)
// only (the words of the other pairs untouched; columns n..31 of those pairs set to 0),
// rounded as vcvtne2ps2bf16 rounds (nearest even, DAZ). n <= 32.
void pack_pairs_panel32__avx512bf16(const float* X, int64_t ldx, int n, int64_t K, int64_t kp0,
                                    int64_t kp1, uint32_t* panel);

// M x K weights (row-major fp32) encoded once as bf16 (bf16_from_float with `rounding`, the
// values FissionPackedA's bf16 strips hold for nearest_even and truncate) in 12-row strips.
class Bf16RowStrips {
 public:
  Bf16RowStrips() = default;
  Bf16RowStrips(const float* W, int64_t M, int64_t K, Rounding rounding);
  bool empty() const { return words_ == nullptr; }
  int64_t rows() const { return M_; }
  int64_t depth() const { return K_; }
  int64_t pairs() const { return (K_ + 1) / 2; }
  int64_t strips() const { return (M_ + 11) / 12; }
  const uint32_t* strip(int64_t s) const { return words_.get() + s * 12 * pairs(); }
  int64_t bytes() const { return strips() * 12 * pairs() * 4; }

 private:
  // aligned_alloc_floats storage (huge pages advised: first touch of fc6's 75 MB in 4 KiB
  // pages took ~200 ms here); copies share it.
  std::shared_ptr<uint32_t> words_;
  int64_t M_ = 0, K_ = 0;
};

// Y^T [M x N] = W X^T: yt[i * N + j] = sum_k W(i, k) X(j, k), X row j at X + j * ldx (K floats),
// the products of bf16 operands summed in fp32 in k order (the sums of the fission tile's native
// bf16 path, bit for bit). On the calling thread's OpenMP team. Needs avx512_bf16.
void bf16_row_strips_gemm(const Bf16RowStrips& w, int64_t N, const float* X, int64_t ldx,
                          float* yt);

}  // namespace deftnn::gemm
