// deftnn CUDA backend: the tensor-core GEMM - the GPU's own hardware data fission unit, as
// AVX512-BF16's vdpbf16ps is the CPU's. The 16-bit operands go from device memory to shared
// memory as they are and the tensor cores (mma through WMMA, 16x16x16 fragments) multiply them
// natively with fp32 accumulation: IEEE half as fp16, Deft-16 / Deft-16Q codes as bf16 (the same
// bits: Deft-16 is the top half of an fp32). Deft-8 weights are widened to bf16 when staged (every
// Deft-8 value, N = 1..7, is exact in bf16), with Deft-16 activations.
//
// A block computes a 128 x 128 tile with 8 warps (2 x 4, 64 x 32 each: 4 x 2 fragments) over K in
// steps of 32, double-buffered through registers; the epilogue goes through a per-warp 16 x 16
// shared scratch to store_c (bias, ReLU, NCHW, split-K atomics) like the SIMT kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "cuda/check.cuh"
#include "cuda/gemm_internal.cuh"

namespace deftnn::cuda {
namespace {

using namespace nvcuda;

constexpr int TBM = 128, TBN = 128, TBK = 32, TNT = 256;
constexpr int A_LD = TBK + 8;    // halves per shared A row (padding against bank conflicts)
constexpr int B_LD = TBN + 8;

// kA8: A holds Deft-8 codes (widened to bf16 when staged); else 16-bit codes of T.
template <typename T, bool kA8>
__global__ void __launch_bounds__(TNT, 2) gemm_tc(GemmArgs p) {
  __shared__ __align__(32) T As[2][TBM][A_LD];
  __shared__ __align__(32) T Bs[2][TBK][B_LD];
  __shared__ __align__(32) float Cs[8][16][16];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int wm = warp / 4, wn = warp % 4;   // warp tile: rows wm*64.., cols wn*32..
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const int ktiles = (p.K + TBK - 1) / TBK;
  const int kt_begin = blockIdx.z * p.ktiles_per_split;
  const int kt_end = min(ktiles, kt_begin + p.ktiles_per_split);
  // Row strides in elements: A in codes (16-bit: 2 per word; Deft-8: 4 per word), B 16-bit.
  const int64_t lda = p.lda_w * (kA8 ? 4 : 2), ldb = p.ldb_w * 2;

  // A tile: 128 rows x 32 k. 16-bit: 4 uint4 per row (2 per thread); Deft-8: 2 per row (1).
  constexpr int A_U4_ROW = kA8 ? 2 : 4;
  constexpr int A_LOADS = TBM * A_U4_ROW / TNT;
  constexpr int B_LOADS = 2;   // 32 rows x 16 uint4
  uint4 ra[A_LOADS], rb[B_LOADS];
  const unsigned char* Ab = reinterpret_cast<const unsigned char*>(p.A);
  const unsigned char* Bb = reinterpret_cast<const unsigned char*>(p.B);
  auto load = [&](int kt) {
#pragma unroll
    for (int s = 0; s < A_LOADS; ++s) {
      const int idx = t + s * TNT, row = idx / A_U4_ROW, q = idx % A_U4_ROW;
      const int gm = m0 + row;
      const int64_t k = static_cast<int64_t>(kt) * TBK + q * (kA8 ? 16 : 8);
      ra[s] = make_uint4(0, 0, 0, 0);
      if (gm < p.M && k < lda)
        ra[s] = __ldg(reinterpret_cast<const uint4*>(Ab + (gm * lda + k) * (kA8 ? 1 : 2)));
    }
#pragma unroll
    for (int s = 0; s < B_LOADS; ++s) {
      const int idx = t + s * TNT, r = idx / 16, q = idx % 16;
      const int gk = kt * TBK + r;
      const int64_t n = n0 + q * 8;
      rb[s] = make_uint4(0, 0, 0, 0);
      if (gk < p.K && n < ldb) rb[s] = __ldg(reinterpret_cast<const uint4*>(Bb + (gk * ldb + n) * 2));
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int s = 0; s < A_LOADS; ++s) {
      const int idx = t + s * TNT, row = idx / A_U4_ROW, q = idx % A_U4_ROW;
      if constexpr (kA8) {
        const uint32_t w[4] = {ra[s].x, ra[s].y, ra[s].z, ra[s].w};
        uint32_t o[8];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float v[4];
          p.d8.quad(w[j], v);
          // Exact in bf16: the top half of the fp32.
          o[2 * j] = (__float_as_uint(v[0]) >> 16) | (__float_as_uint(v[1]) & 0xFFFF0000u);
          o[2 * j + 1] = (__float_as_uint(v[2]) >> 16) | (__float_as_uint(v[3]) & 0xFFFF0000u);
        }
        uint4* dst = reinterpret_cast<uint4*>(&As[buf][row][q * 16]);
        dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
        dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
      } else {
        *reinterpret_cast<uint4*>(&As[buf][row][q * 8]) = ra[s];
      }
    }
#pragma unroll
    for (int s = 0; s < B_LOADS; ++s) {
      const int idx = t + s * TNT, r = idx / 16, q = idx % 16;
      *reinterpret_cast<uint4*>(&Bs[buf][r][q * 8]) = rb[s];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  auto compute = [&](int buf) {
#pragma unroll
    for (int kk = 0; kk < TBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(fa[i], &As[buf][wm * 64 + i * 16][kk], A_LD);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &Bs[buf][kk][wn * 32 + j * 16], B_LD);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  };
  double_buffered_k_loop(kt_begin, kt_end, load, store, compute);

  // Epilogue: each fragment through the warp's scratch, 8 values per lane.
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(&Cs[warp][0][0], acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int r = (lane * 8 + e) / 16, c = (lane * 8 + e) % 16;
        const int m = m0 + wm * 64 + i * 16 + r, n = n0 + wn * 32 + j * 16 + c;
        if (m < p.M && n < p.N) store_c(p, m, n, Cs[warp][r][c], blockIdx.z == 0);
      }
      __syncwarp();
    }
}

}  // namespace

bool tensor_core_pair(Format fa, Format fb) {
  if (fa == Format::half) return fb == Format::half;
  const bool b16 = fb == Format::deft16 || fb == Format::deft16q;
  if (fa == Format::deft16 || fa == Format::deft16q) return b16;
  return is_deft8(fa) && b16;
}

int tensor_core_k_step() { return TBK; }

void launch_tensor_core(const GemmArgs& g, Format fa, Format fb, int splits, cudaStream_t st) {
  (void)fb;
  const dim3 grid((g.N + TBN - 1) / TBN, (g.M + TBM - 1) / TBM, splits);
  if (fa == Format::half) gemm_tc<__half, false><<<grid, TNT, 0, st>>>(g);
  else if (is_deft8(fa)) gemm_tc<__nv_bfloat16, true><<<grid, TNT, 0, st>>>(g);
  else gemm_tc<__nv_bfloat16, false><<<grid, TNT, 0, st>>>(g);
  DEFTNN_CUDA_LAUNCHED("gemm_tc");
}

}  // namespace deftnn::cuda
