// Max pooling's horizontal pass (inference, separable path of src/ops/pool.cpp): from t, the
// column maxima of a row of windows, y[i] = max(t[i * sw], ..., t[i * sw + kw - 1]) for i < n,
// folded left to right as m = std::max(m, t[..]) (bitwise the same maximum, NaN and -0
// included). Per ISA: the portable loop is the reference; the AVX-512 version covers the 3-wide,
// stride-2 window of AlexNet, SqueezeNet and ResNet (even / odd lanes split by vpermt2ps).
#pragma once
#include <cstdint>

#include "deftnn/gemm.h"

namespace deftnn::ops {

void max_row__portable(const float* t, int64_t n, int64_t kw, int64_t sw, float* y);
void max_row_k3s2__avx512(const float* t, int64_t n, float* y);

// Both passes of a 3x3, stride-2 window for one output row, from its three input rows, with
// the columns outside [w0, w1) as -inf (padding, or a ceil-mode window past the edge): with
// t[w] = std::max(std::max(r0[w], r1[w]), r2[w]) for w0 <= w < w1 (else -inf), y[i] = max_row
// of t (folded left to right as above), i < n; reads r0, r1, r2 only inside [w0, w1) (the
// pointers may point before the row: w0 = left padding). The column maxima in a temporary row
// and a max_row call per output row, plus a scalar loop for every edge window, were 3.8x slower
// than ONNX Runtime on SqueezeNet's pools and half of cifarnet's (13- to 55-wide rows).
void max_rows3_k3s2__portable(const float* r0, const float* r1, const float* r2, int64_t n,
                              int64_t w0, int64_t w1, float* y);
void max_rows3_k3s2__avx512(const float* r0, const float* r1, const float* r2, int64_t n,
                            int64_t w0, int64_t w1, float* y);

// Both passes of a 2x2, stride-2 window for the interior of one output row (every column of
// [0, 2n) of both rows valid): y[i] = std::max(std::max(r0[2i], r0[2i + 1]),
// std::max(r1[2i], r1[2i + 1])), the operand order of the layer's scalar loop, i < n. Reads r0
// and r1 only inside [0, 2n). VGG's pools, 2 threads, batch 16: the scalar loop ran its 64 x
// 224 x 224 input at 25 GB/s.
void max_rows2_k2s2__portable(const float* r0, const float* r1, int64_t n, float* y);
void max_rows2_k2s2__avx512(const float* r0, const float* r1, int64_t n, float* y);

// The best version for the active ISA.
inline void max_row(Isa isa, const float* t, int64_t n, int64_t kw, int64_t sw, float* y) {
  if (kw == 3 && sw == 2 && (isa == Isa::avx512 || isa == Isa::avx512_bf16))
    max_row_k3s2__avx512(t, n, y);
  else
    max_row__portable(t, n, kw, sw, y);
}

inline void max_rows3_k3s2(Isa isa, const float* r0, const float* r1, const float* r2, int64_t n,
                           int64_t w0, int64_t w1, float* y) {
  if (isa == Isa::avx512 || isa == Isa::avx512_bf16)
    max_rows3_k3s2__avx512(r0, r1, r2, n, w0, w1, y);
  else
    max_rows3_k3s2__portable(r0, r1, r2, n, w0, w1, y);
}

inline void max_rows2_k2s2(Isa isa, const float* r0, const float* r1, int64_t n, float* y) {
  if (isa == Isa::avx512 || isa == Isa::avx512_bf16)
    max_rows2_k2s2__avx512(r0, r1, n, y);
  else
    max_rows2_k2s2__portable(r0, r1, n, y);
}

}  // namespace deftnn::ops
