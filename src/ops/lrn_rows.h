// LRN across channels, inference with beta = 0.75 (AlexNet, CaffeNet, cifarnet): one pass per
// block of spatial positions, the running sum of squares over channels kept in registers and
// y = x * scale^-0.75 = x / (sqrt(scale) * sqrt(sqrt(scale))) written directly (no scale
// tensor, which only backward needs). Per ISA: the portable loop is the reference.
#pragma once
#include <cstdint>

#include "deftnn/gemm.h"

namespace deftnn::ops {

// Positions [s0, s1) of one image x[C][S]: scale_c(s) = k + a * max(sum over the window
// [c - pre, c + post] (clipped to [0, C)) of x^2, 0), y = x * scale^-0.75.
void lrn_b075__portable(const float* x, int64_t C, int64_t S, int64_t pre, int64_t post, float a,
                        float k, int64_t s0, int64_t s1, float* y);
void lrn_b075__avx512(const float* x, int64_t C, int64_t S, int64_t pre, int64_t post, float a,
                      float k, int64_t s0, int64_t s1, float* y);

inline void lrn_b075(Isa isa, const float* x, int64_t C, int64_t S, int64_t pre, int64_t post,
                     float a, float k, int64_t s0, int64_t s1, float* y) {
  if (isa == Isa::avx512 || isa == Isa::avx512_bf16)
    lrn_b075__avx512(x, C, S, pre, post, a, k, s0, s1, y);
  else
    lrn_b075__portable(x, C, S, pre, post, a, k, s0, s1, y);
}

}  // namespace deftnn::ops
