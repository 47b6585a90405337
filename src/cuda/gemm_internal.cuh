// deftnn CUDA backend, internal: the GEMM with a layer's epilogue (bias, ReLU, NCHW output),
// used by src/cuda/session.cu. cuda::gemm() is gemm_ex() with the plain epilogue.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "deftnn/cuda.h"
#include "formats/widen_cuda.cuh"

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
// The arguments every GEMM kernel takes (operands as 32-bit words of codes).
struct GemmArgs {
  const uint32_t* A;   // words
  const uint32_t* B;
  float* C;
  int64_t lda_w, ldb_w, ldc;   // A, B in words; C in floats
  int64_t img_stride;          // C addressing: see Epilogue (src/cuda/gemm_internal.cuh)
  int ohw;
  const float* bias;
  int M, N, K;
  int ktiles_per_split;
  float alpha;
  bool atomic, relu;
  cuda_fmt::WidenDeft8 d8;
};

// The epilogue of one value of C (row m, column n): alpha * acc (+ bias, ReLU), stored or added.
__device__ __forceinline__ void store_c(const GemmArgs& p, int m, int n, float acc, bool first_split) {
  float v = p.alpha * acc;
  if (p.bias && first_split) v += __ldg(p.bias + m);
  const int img = n / p.ohw, pos = n - img * p.ohw;
  float* c = p.C + img * p.img_stride + static_cast<int64_t>(m) * p.ldc + pos;
  if (p.atomic) {
    atomicAdd(c, v);
  } else {
    if (p.relu) v = v > 0.0f ? v : 0.0f * v;   // as the CPU ReLU: -0 for negatives, NaN kept
    *c = v;
  }
}

// The k loop of both GEMM kernels: tiles [kt_begin, kt_end) through two shared buffers, the next
// tile's global loads in flight while the current one is multiplied, one barrier per tile.
template <class Load, class Store, class Compute>
__device__ __forceinline__ void double_buffered_k_loop(int kt_begin, int kt_end, Load&& load,
                                                       Store&& store, Compute&& compute) {
  if (kt_begin >= kt_end) return;
  load(kt_begin);
  store(0);
  __syncthreads();
  int buf = 0;
  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const bool next = kt + 1 < kt_end;
    if (next) load(kt + 1);
    compute(buf);
    if (next) store(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
}

// Launches the tensor-core kernel (src/cuda/tensor_core_gemm.cu) for A in fa, B in fb (see
// tensor_core_pair), K split over `splits` blocks when g.atomic.
bool tensor_core_pair(Format fa, Format fb);
int tensor_core_k_step();
void launch_tensor_core(const GemmArgs& g, Format fa, Format fb, int splits, cudaStream_t st);

bool gemm_ex(const Operand& A, const Operand& B, const Epilogue& e, float alpha, Staging staging,
             void* stream);

}  // namespace deftnn::cuda
