// deftnn CUDA backend: the layers around the GEMMs (see layers.cuh).
#include <cfloat>

#include "cuda/check.cuh"
#include "cuda/layers.cuh"

namespace deftnn::cuda {
namespace {

unsigned blocks_for(int64_t n, int threads = 256) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

__global__ void pool_kernel(PoolParams p, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = p.planes * p.OH * p.OW;
  if (i >= total) return;
  const int ow = static_cast<int>(i % p.OW), oh = static_cast<int>(i / p.OW % p.OH);
  const int64_t plane = i / (static_cast<int64_t>(p.OH) * p.OW);
  const float* xp = x + plane * p.H * p.W;
  int hs = oh * p.sh - p.pt, ws = ow * p.sw - p.pl;
  if (p.max) {
    const int he = min(hs + p.kh, p.H), we = min(ws + p.kw, p.W);
    hs = max(hs, 0);
    ws = max(ws, 0);
    float m = -INFINITY;
    for (int h = hs; h < he; ++h)
      for (int w = ws; w < we; ++w) m = fmaxf(m, __ldg(xp + h * p.W + w));
    y[i] = m;
  } else {
    int he = min(hs + p.kh, p.H + p.pb), we = min(ws + p.kw, p.W + p.pr);
    const int padded = (he - hs) * (we - ws);
    hs = max(hs, 0);
    ws = max(ws, 0);
    he = min(he, p.H);
    we = min(we, p.W);
    const int real = (he - hs) * (we - ws);
    float s = 0.0f;
    for (int h = hs; h < he; ++h)
      for (int w = ws; w < we; ++w) s += __ldg(xp + h * p.W + w);
    y[i] = s * (1.0f / static_cast<float>(p.count_include_pad ? padded : real));
  }
}

__global__ void lrn_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t images, int C,
                           int64_t S, int size, float alpha_over_size, float beta, float k) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= images * C * S) return;
  const int64_t s = i % S;
  const int c = static_cast<int>(i / S % C);
  const int64_t img = i / (S * C);
  const int pre = (size - 1) / 2, post = size - 1 - pre;
  float sum = 0.0f;
  for (int cc = max(0, c - pre); cc <= min(C - 1, c + post); ++cc) {
    const float v = __ldg(x + (img * C + cc) * S + s);
    sum += v * v;
  }
  const float scale = k + alpha_over_size * sum;
  y[i] = x[i] * powf(scale, -beta);
}

__global__ void relu_kernel(const float* x, float* y, int64_t n, float slope) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : slope * v;
  }
}

__global__ void scalar_kernel(const float* x, float* y, int64_t n, int op, float value) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = op == 0 ? x[i] + value : x[i] * value;
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a[i] + b[i];
}

// One warp per row.
__global__ void softmax_kernel(const float* x, float* y, int64_t rows, int classes) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * classes;
  float m = -INFINITY;
  for (int c = lane; c < classes; c += 32) m = fmaxf(m, xr[c]);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
  float s = 0.0f;
  for (int c = lane; c < classes; c += 32) s += expf(xr[c] - m);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
  for (int c = lane; c < classes; c += 32) y[r * classes + c] = expf(xr[c] - m) / s;
}

}  // namespace

void pool(const PoolParams& p, const float* x, float* y, cudaStream_t st) {
  const int64_t n = p.planes * p.OH * p.OW;
  pool_kernel<<<blocks_for(n), 256, 0, st>>>(p, x, y);
  DEFTNN_CUDA_LAUNCHED("pool");
}
void lrn(const float* x, float* y, int64_t images, int C, int64_t S, int size, float alpha,
         float beta, float k, cudaStream_t st) {
  lrn_kernel<<<blocks_for(images * C * S), 256, 0, st>>>(x, y, images, C, S, size,
                                                          alpha / static_cast<float>(size), beta, k);
  DEFTNN_CUDA_LAUNCHED("lrn");
}
void relu(const float* x, float* y, int64_t n, float slope, cudaStream_t st) {
  relu_kernel<<<blocks_for(n), 256, 0, st>>>(x, y, n, slope);
  DEFTNN_CUDA_LAUNCHED("relu");
}
void scalar_op(const float* x, float* y, int64_t n, int op, float value, cudaStream_t st) {
  scalar_kernel<<<blocks_for(n), 256, 0, st>>>(x, y, n, op, value);
  DEFTNN_CUDA_LAUNCHED("eltwise_const");
}
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t st) {
  add_kernel<<<blocks_for(n), 256, 0, st>>>(a, b, y, n);
  DEFTNN_CUDA_LAUNCHED("add");
}
void softmax(const float* x, float* y, int64_t rows, int classes, cudaStream_t st) {
  softmax_kernel<<<blocks_for(rows * 32), 256, 0, st>>>(x, y, rows, classes);
  DEFTNN_CUDA_LAUNCHED("softmax");
}

}  // namespace deftnn::cuda
