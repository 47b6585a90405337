// deftnn CUDA backend, internal: the layers around the GEMMs (src/cuda/layers.cu), each the GPU
// twin of its CPU layer in src/ops/ (same formulas, same Caffe pooling windows).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deftnn::cuda {

struct PoolParams {
  int64_t planes = 0;   // images * channels
  int H = 0, W = 0, OH = 0, OW = 0, kh = 0, kw = 0, sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
  bool max = true, count_include_pad = true;
};
void pool(const PoolParams& p, const float* x, float* y, cudaStream_t st);

// Across channels: scale = k + alpha/size * sum_{c' in [c-pre, c+post]} x^2, y = x * scale^-beta.
void lrn(const float* x, float* y, int64_t images, int C, int64_t S, int size, float alpha,
         float beta, float k, cudaStream_t st);
// y = x > 0 ? x : slope * x (in place allowed).
void relu(const float* x, float* y, int64_t n, float slope, cudaStream_t st);
// y = x op value (op 0: add, 1: mul).
void scalar_op(const float* x, float* y, int64_t n, int op, float value, cudaStream_t st);
// y = a + b.
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t st);
// Softmax over `classes` consecutive values of each of `rows` rows (stable: max subtracted).
void softmax(const float* x, float* y, int64_t rows, int classes, cudaStream_t st);

}  // namespace deftnn::cuda
