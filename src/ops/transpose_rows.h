// The fully connected layer's transposing store: at small batch fc computes Y^T = W X^T (the
// weights as the GEMM's A operand, see fc.cpp) and stores Y. For output features [o0, o1):
//   y[n * O + o] = b ? yt[o * N + n] + b[o] : yt[o * N + n], n < N,
// then, with relu, the relu layer's operation (v > 0 ? v : 0 * v), so that the fused ReLU is
// bitwise the separate layer. Without bias and ReLU a plain transpose (fc's sparse path
// transposes X with it). Per ISA: the portable loop is the reference; the AVX-512 version
// transposes 16 x 16 blocks in registers. The scalar loop was 6-13% of LeNet's ip1 at batch 32
// (500 x 32), twice that when its loads and stores aliased at 4 KiB (address layout dependent:
// the first model a process ran was 1.3x slower than the next one).
#pragma once
#include <cstdint>

#include "deftnn/gemm.h"

namespace deftnn::ops {

void transpose_bias__portable(const float* yt, int64_t O, int64_t N, const float* b, bool relu,
                              float* y, int64_t o0, int64_t o1);
void transpose_bias__avx512(const float* yt, int64_t O, int64_t N, const float* b, bool relu,
                            float* y, int64_t o0, int64_t o1);

inline void transpose_bias(Isa isa, const float* yt, int64_t O, int64_t N, const float* b,
                           bool relu, float* y, int64_t o0, int64_t o1) {
  if (isa == Isa::avx512 || isa == Isa::avx512_bf16)
    transpose_bias__avx512(yt, O, N, b, relu, y, o0, o1);
  else
    transpose_bias__portable(yt, O, N, b, relu, y, o0, o1);
}

}  // namespace deftnn::ops
