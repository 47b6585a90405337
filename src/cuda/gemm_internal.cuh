// deftnn CUDA backend, internal: the GEMM with a layer's epilogue (bias, ReLU, NCHW output),
// used by src/cuda/session.cu. cuda::gemm() is gemm_ex() with the plain epilogue.
#pragma once
#include <cstdint>

#include "deftnn/cuda.h"

namespace deftnn::cuda {

// Where C (m, n) goes: C + (n / ohw) * img_stride + m * ldc + n % ohw - a row-major matrix
// (ohw = N, img_stride = 0), a convolution's NCHW output (ohw = OH*OW, ldc = ohw, img_stride =
// channels * ohw), or a fully connected [batch, M] output (ohw = 1, ldc = 1, img_stride = M).
// Then + bias[m] (if any) and ReLU (if relu).
struct Epilogue {
  float* C = nullptr;
  int64_t ldc = 0;
  int64_t ohw = 0;
  int64_t img_stride = 0;
  const float* bias = nullptr;
  bool relu = false;
};

// Returns true when ReLU could not be applied in the epilogue (K split over blocks adds partial
// tiles atomically): the caller applies it after.
bool gemm_ex(const Operand& A, const Operand& B, const Epilogue& e, float alpha, Staging staging,
             void* stream);

}  // namespace deftnn::cuda
