// deftnn CUDA backend: the fission GEMM (paper §4.2 on its own ground, a GPU).
//
// Tiled kernel: a block computes a 128 x 128 tile of C with 256 threads, 8 x 8 values each, over
// K in steps of 16, double-buffered in shared memory. The operands are read from device memory as
// 32-bit words of codes (1 fp32, 2 16-bit codes or 4 Deft-8 codes per word, 16 bytes per load):
//   near_compute (fission): the words go to shared memory as they are - A transposed at word
//     granularity (As[k-word][m]), B as is (Bs[k][n-word]) - and each thread widens the words it
//     reads from shared memory in registers right before its FMAs. A 16-bit B row of 8 columns is
//     one 16-byte shared load instead of two, and the tiles take half the shared memory.
//   near_weights: the weights as near_compute, the activations widened when staged (the inner
//     loop then widens only A: on this GPU the FMA loop, not shared memory, is the bottleneck).
//   off_chip (baseline, §5.8): the words are widened when staged, so shared memory and the inner
//     loop are the fp32 kernel's.
// Small grids (batch-1 convolutions) split K over blocks and add their partial tiles atomically.
// Batch-1 fully connected layers (N <= 8, fp32 B) run a warp-per-row kernel: bound by device
// memory, where the 16- and 8-bit weights read 2x / 4x fewer bytes.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda/check.cuh"
#include "cuda/gemm_internal.cuh"
#include "deftnn/cuda.h"
#include "formats/widen_cuda.cuh"

namespace deftnn::cuda {
namespace {

using cuda_fmt::WidenDeft16;
using cuda_fmt::WidenDeft16Q;
using cuda_fmt::WidenDeft8;
using cuda_fmt::WidenF32;
using cuda_fmt::WidenHalf;

constexpr int BM = 128, BN = 128, BK = 16, NT = 256;
constexpr int kPad = 4;   // words of padding per shared A row (transposed stores, fewer conflicts)

template <class F> __host__ __device__ constexpr int vpw() { return 32 / F::kBits; }   // values per 32-bit word

// Widens one word of codes into vpw<F>() values (index 0 = the lowest bits).
template <class F>
__device__ __forceinline__ void widen(uint32_t w, float* v, const WidenDeft8& d8) {
  if constexpr (F::kBits == 32) {
    v[0] = __uint_as_float(w);
  } else if constexpr (F::kBits == 16) {
    F::pair(w, v[0], v[1]);
  } else {
    d8.quad(w, v);
  }
}

// Row of C a thread's i-th accumulator row maps to (i < 8): two groups of 4, 64 rows apart.
__device__ __forceinline__ int tile_row(int ty, int i) { return (i < 4 ? ty * 4 : 64 + ty * 4 - 4) + i; }

// Columns: fp32 B rows are read as two 16-byte vectors 64 columns apart (a warp's 16 threads then
// read 256 contiguous bytes: no bank conflict); 16-bit B rows as one 16-byte vector of 8 columns.
template <bool kB16>
__device__ __forceinline__ int tile_col(int tx, int j) {
  if constexpr (kB16) return tx * 8 + j;
  else return (j < 4 ? tx * 4 : 64 + tx * 4 - 4) + j;
}

// kOffA / kOffB: widen that operand when its tile is staged (off-chip packing) instead of in
// registers next to the FMA (fission).
template <class FA, class FB, bool kOffA, bool kOffB>
__global__ void __launch_bounds__(NT, 2) gemm_tiled(GemmArgs p) {
  constexpr int VA = vpw<FA>(), VB = vpw<FB>();
  constexpr int AW = BK / VA;                 // A words per tile row (16, 8 or 4)
  constexpr int A_U4_ROW = AW / 4;            // 16-byte loads per A row (4, 2 or 1)
  constexpr int A_LOADS = (BM * A_U4_ROW + NT - 1) / NT;
  constexpr int BW = BN / VB;                 // B words per tile row (128 or 64)
  constexpr int B_U4_ROW = BW / 4;
  constexpr int B_LOADS = BK * B_U4_ROW / NT;
  // Shared tiles: near - words as loaded; off - fp32 after widening.
  constexpr int SA_ROWS = kOffA ? BK : AW;
  constexpr int SB_COLS = kOffB ? BN : BW;
  constexpr bool kB16 = !kOffB && FB::kBits == 16;
  __shared__ __align__(16) uint32_t As[2][SA_ROWS][BM + kPad];
  __shared__ __align__(16) uint32_t Bs[2][BK][SB_COLS];

  const int t = threadIdx.x, tx = t % 16, ty = t / 16;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int ktiles = (p.K + BK - 1) / BK;
  const int kt_begin = blockIdx.z * p.ktiles_per_split;
  const int kt_end = min(ktiles, kt_begin + p.ktiles_per_split);

  uint4 ra[A_LOADS], rb[B_LOADS];
  auto load = [&](int kt) {
#pragma unroll
    for (int s = 0; s < A_LOADS; ++s) {
      const int idx = t + s * NT, row = idx / A_U4_ROW, q = idx % A_U4_ROW;
      const int gm = m0 + row;
      ra[s] = make_uint4(0, 0, 0, 0);
      if (idx < BM * A_U4_ROW && gm < p.M)
        ra[s] = __ldg(reinterpret_cast<const uint4*>(p.A + gm * p.lda_w + kt * AW + q * 4));
    }
#pragma unroll
    for (int s = 0; s < B_LOADS; ++s) {
      const int idx = t + s * NT, r = idx / B_U4_ROW, q = idx % B_U4_ROW;
      const int gk = kt * BK + r;
      const int64_t w = static_cast<int64_t>(n0) / VB + q * 4;
      rb[s] = make_uint4(0, 0, 0, 0);
      if (gk < p.K && w < p.ldb_w) rb[s] = __ldg(reinterpret_cast<const uint4*>(p.B + gk * p.ldb_w + w));
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int s = 0; s < A_LOADS; ++s) {
      const int idx = t + s * NT, row = idx / A_U4_ROW, q = idx % A_U4_ROW;
      if (idx >= BM * A_U4_ROW) continue;
      const uint32_t w[4] = {ra[s].x, ra[s].y, ra[s].z, ra[s].w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (kOffA) {
          float v[VA];
          widen<FA>(w[j], v, p.d8);
#pragma unroll
          for (int i = 0; i < VA; ++i) As[buf][(q * 4 + j) * VA + i][row] = __float_as_uint(v[i]);
        } else {
          As[buf][q * 4 + j][row] = w[j];
        }
      }
    }
#pragma unroll
    for (int s = 0; s < B_LOADS; ++s) {
      const int idx = t + s * NT, r = idx / B_U4_ROW, q = idx % B_U4_ROW;
      if constexpr (kOffB) {
        const uint32_t w[4] = {rb[s].x, rb[s].y, rb[s].z, rb[s].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float v[VB];
          widen<FB>(w[j], v, p.d8);
#pragma unroll
          for (int i = 0; i < VB; ++i) Bs[buf][r][(q * 4 + j) * VB + i] = __float_as_uint(v[i]);
        }
      } else {
        *reinterpret_cast<uint4*>(&Bs[buf][r][q * 4]) = rb[s];
      }
    }
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  // One k step: a[i] (8 rows) times B row k of shared buffer `buf`.
  auto fma_row = [&](const float* a, int buf, int k) {
    float b[8];
    if constexpr (kOffB || FB::kBits == 32) {
      const uint4 b0 = *reinterpret_cast<const uint4*>(&Bs[buf][k][tx * 4]);
      const uint4 b1 = *reinterpret_cast<const uint4*>(&Bs[buf][k][64 + tx * 4]);
      b[0] = __uint_as_float(b0.x); b[1] = __uint_as_float(b0.y);
      b[2] = __uint_as_float(b0.z); b[3] = __uint_as_float(b0.w);
      b[4] = __uint_as_float(b1.x); b[5] = __uint_as_float(b1.y);
      b[6] = __uint_as_float(b1.z); b[7] = __uint_as_float(b1.w);
    } else {
      const uint4 bw = *reinterpret_cast<const uint4*>(&Bs[buf][k][tx * 4]);
      widen<FB>(bw.x, b + 0, p.d8);
      widen<FB>(bw.y, b + 2, p.d8);
      widen<FB>(bw.z, b + 4, p.d8);
      widen<FB>(bw.w, b + 6, p.d8);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  };

  auto compute = [&](int buf) {
    if constexpr (kOffA) {
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        const uint4 a0 = *reinterpret_cast<const uint4*>(&As[buf][k][ty * 4]);
        const uint4 a1 = *reinterpret_cast<const uint4*>(&As[buf][k][64 + ty * 4]);
        const float a[8] = {__uint_as_float(a0.x), __uint_as_float(a0.y), __uint_as_float(a0.z),
                            __uint_as_float(a0.w), __uint_as_float(a1.x), __uint_as_float(a1.y),
                            __uint_as_float(a1.z), __uint_as_float(a1.w)};
        fma_row(a, buf, k);
      }
    } else {
#pragma unroll
      for (int kw = 0; kw < AW; ++kw) {
        const uint4 a0 = *reinterpret_cast<const uint4*>(&As[buf][kw][ty * 4]);
        const uint4 a1 = *reinterpret_cast<const uint4*>(&As[buf][kw][64 + ty * 4]);
        const uint32_t aw[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        float av[VA][8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          float v[VA];
          widen<FA>(aw[i], v, p.d8);
#pragma unroll
          for (int j = 0; j < VA; ++j) av[j][i] = v[j];
        }
#pragma unroll
        for (int j = 0; j < VA; ++j) fma_row(av[j], buf, kw * VA + j);
      }
    }
  };

  double_buffered_k_loop(kt_begin, kt_end, load, store, compute);

  // Epilogue.
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + tile_row(ty, i);
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + tile_col<kB16>(tx, j);
      if (n < p.N) store_c(p, m, n, acc[i][j], blockIdx.z == 0);
    }
  }
}

// Warp-per-row GEMV-like kernel for N <= 8 columns of fp32 B (batch-1 fully connected layers).
// Each lane reads 16 bytes of the weight row per step (4 fp32, 8 16-bit or 16 Deft-8 values), two
// steps in flight, widens them in registers and multiplies with the matching B rows.
template <class FA>
__global__ void __launch_bounds__(256) gemv_rows(GemmArgs p, const float* B, int64_t ldb) {
  const uint32_t* A = p.A;
  const int64_t lda_w = p.lda_w;
  const int M = p.M, N = p.N, K = p.K;
  const WidenDeft8 d8 = p.d8;
  constexpr int VA = vpw<FA>(), VL = 4 * VA;   // values per lane per step
  const int lane = threadIdx.x % 32;
  const int m = blockIdx.x * 8 + threadIdx.x / 32;
  if (m >= M) return;
  const uint32_t* a = A + m * lda_w;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  auto step = [&](const uint4& u, int k0) {
    float v[VL];
    widen<FA>(u.x, v + 0 * VA, d8);
    widen<FA>(u.y, v + 1 * VA, d8);
    widen<FA>(u.z, v + 2 * VA, d8);
    widen<FA>(u.w, v + 3 * VA, d8);
    if (N == 1 && ldb == 1 && k0 + VL <= K) {
#pragma unroll
      for (int i = 0; i < VL; i += 4) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(B + k0 + i));
        acc[0] = fmaf(v[i], x.x, acc[0]);
        acc[0] = fmaf(v[i + 1], x.y, acc[0]);
        acc[0] = fmaf(v[i + 2], x.z, acc[0]);
        acc[0] = fmaf(v[i + 3], x.w, acc[0]);
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < VL; ++i) {
      if (k0 + i >= K) break;
      const float* b = B + static_cast<int64_t>(k0 + i) * ldb;
#pragma unroll
      for (int n = 0; n < 8; ++n)
        if (n < N) acc[n] = fmaf(v[i], __ldg(b + n), acc[n]);
    }
  };
  const int stride = 32 * VL;
  int k0 = lane * VL;
  for (; k0 + stride < K; k0 += 2 * stride) {
    const uint4 u0 = __ldcs(reinterpret_cast<const uint4*>(a + k0 / VA));
    const uint4 u1 = __ldcs(reinterpret_cast<const uint4*>(a + (k0 + stride) / VA));
    step(u0, k0);
    step(u1, k0 + stride);
  }
  if (k0 < K) step(__ldcs(reinterpret_cast<const uint4*>(a + k0 / VA)), k0);
#pragma unroll
  for (int n = 0; n < 8; ++n) {
    float s = acc[n];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    if (lane == 0 && n < N) store_c(p, m, n, s, true);
  }
}

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
    return v > 0 ? v : 1;
  }();
  return n;
}

// The fewest k tiles a split gets (each split adds its whole tile to C atomically).
// DEFTNN_CUDA_SPLITK_MIN overrides it, for tuning.
int splitk_min_tiles() {
  static const int n = [] {
    const char* e = std::getenv("DEFTNN_CUDA_SPLITK_MIN");
    const int v = e ? std::atoi(e) : 0;
    return v > 0 ? v : 4;
  }();
  return n;
}

int bits_of(Format f) { return format_info(f).bits_per_value; }

template <class FA, class FB>
void launch_tiled(const GemmArgs& base, Staging s, int splits, cudaStream_t st) {
  dim3 grid((base.N + BN - 1) / BN, (base.M + BM - 1) / BM, splits);
  switch (s) {
    case Staging::near_compute: gemm_tiled<FA, FB, false, false><<<grid, NT, 0, st>>>(base); break;
    case Staging::near_weights: gemm_tiled<FA, FB, false, true><<<grid, NT, 0, st>>>(base); break;
    case Staging::off_chip: gemm_tiled<FA, FB, true, true><<<grid, NT, 0, st>>>(base); break;
    case Staging::tensor_core: break;   // launch_tensor_core, never here
  }
}

template <class FA>
void launch_gemv(const GemmArgs& g, const float* B, int64_t ldb, cudaStream_t st) {
  gemv_rows<FA><<<(g.M + 7) / 8, 256, 0, st>>>(g, B, ldb);
}

// need_ld16: the tiled kernel's 16-byte loads along a row need ld a multiple of 16 elements.
void check_operand(const Operand& o, const char* name, bool need_ld16) {
  if (!supported(o.format))
    throw Error(std::string("CUDA gemm: operand ") + name + " in format " + format_name(o.format) +
                " has no kernel");
  if (!o.data || o.rows <= 0 || o.cols <= 0)
    throw Error(std::string("CUDA gemm: operand ") + name + " is empty");
  if (o.ld < o.cols || (need_ld16 && o.ld % 16 != 0))
    throw Error(std::string("CUDA gemm: operand ") + name + " has ld " + std::to_string(o.ld) +
                " (must be >= its " + std::to_string(o.cols) + " columns and a multiple of 16)");
  if (reinterpret_cast<uintptr_t>(o.data) % 16 != 0)
    throw Error(std::string("CUDA gemm: operand ") + name + " is not 16-byte aligned");
  if (o.rows > (1 << 30) || o.ld > (1 << 30))
    throw Error(std::string("CUDA gemm: operand ") + name + " is too large for 32-bit indexing");
}

}  // namespace

bool supported_pair(Format a, Format b) {
  if (!supported(a) || !supported(b)) return false;
  if (is_deft8(a)) return b == Format::f32;
  return b == Format::f32 || b == a;
}

void gemm(const Operand& A, const Operand& B, float* C, int64_t ldc, float alpha, Staging staging,
          void* stream) {
  Epilogue e;
  e.C = C;
  e.ldc = ldc;
  e.ohw = B.cols;
  gemm_ex(A, B, e, alpha, staging, stream);
}

bool gemm_ex(const Operand& A, const Operand& B, const Epilogue& e, float alpha, Staging staging,
             void* stream) {
  // The weight-row kernel (N <= 8, fp32 B) reads B element by element: any ld >= N.
  const bool rows_kernel = B.cols <= 8 && B.format == Format::f32 && staging != Staging::tensor_core;
  check_operand(A, "A", true);
  check_operand(B, "B", !rows_kernel);
  const bool tc = staging == Staging::tensor_core;
  if (tc ? !tensor_core_pair(A.format, B.format) : !supported_pair(A.format, B.format))
    throw Error(std::string("CUDA gemm: no ") + (tc ? "tensor-core " : "") + "kernel for A in " +
                format_name(A.format) + " with B in " + format_name(B.format));
  if (A.cols != B.rows)
    throw Error("CUDA gemm: A is " + std::to_string(A.rows) + "x" + std::to_string(A.cols) +
                " but B is " + std::to_string(B.rows) + "x" + std::to_string(B.cols));
  float* C = e.C;
  const int64_t ldc = e.ldc;
  if (!C || e.ohw <= 0 || e.ohw > B.cols || B.cols % e.ohw != 0 || (e.ohw == B.cols && ldc < B.cols))
    throw Error("CUDA gemm: bad C (ldc " + std::to_string(ldc) + ", " + std::to_string(e.ohw) +
                " columns per image)");
  const cudaStream_t st = as_stream(stream);
  GemmArgs g{};
  g.A = static_cast<const uint32_t*>(A.data);
  g.B = static_cast<const uint32_t*>(B.data);
  g.C = C;
  g.lda_w = A.ld * bits_of(A.format) / 32;
  g.ldb_w = B.ld * bits_of(B.format) / 32;
  g.ldc = ldc;
  g.img_stride = e.img_stride;
  g.ohw = static_cast<int>(e.ohw);
  g.bias = e.bias;
  g.relu = e.relu;
  g.M = static_cast<int>(A.rows);
  g.N = static_cast<int>(B.cols);
  g.K = static_cast<int>(A.cols);
  g.alpha = alpha;
  g.d8 = cuda_fmt::deft8_widen(is_deft8(A.format) ? format_info(A.format).exp_bits : 4);

  // Batch-1 fully connected: warp per row (staging does not apply: no tile is staged).
  if (rows_kernel) {
    const float* b = static_cast<const float*>(B.data);
    switch (A.format) {
      case Format::f32: launch_gemv<WidenF32>(g, b, B.ld, st); break;
      case Format::half: launch_gemv<WidenHalf>(g, b, B.ld, st); break;
      case Format::deft16: launch_gemv<WidenDeft16>(g, b, B.ld, st); break;
      case Format::deft16q: launch_gemv<WidenDeft16Q>(g, b, B.ld, st); break;
      default: launch_gemv<WidenDeft8>(g, b, B.ld, st); break;
    }
    DEFTNN_CUDA_LAUNCHED("gemv_rows");
    return false;
  }

  // Split K when the grid would leave most SMs idle (batch-1 convolutions): at least 4 k tiles
  // per split, about two blocks per SM in all.
  const int blocks = ((g.N + BN - 1) / BN) * ((g.M + BM - 1) / BM);
  const int kstep = tc ? tensor_core_k_step() : BK;
  const int ktiles = (g.K + kstep - 1) / kstep;
  int splits = 1;
  if (blocks < sm_count())
    splits = std::max(1, std::min(ktiles / splitk_min_tiles(), (2 * sm_count()) / blocks));
  g.ktiles_per_split = (ktiles + splits - 1) / splits;
  splits = (ktiles + g.ktiles_per_split - 1) / g.ktiles_per_split;
  g.atomic = splits > 1;
  if (g.atomic) {
    if (e.img_stride == 0)   // one row-major matrix
      DEFTNN_CUDA_CHECK(cudaMemset2DAsync(C, ldc * sizeof(float), 0, g.N * sizeof(float), g.M, st));
    else                     // per image: M rows of ohw values, ldc apart
      DEFTNN_CUDA_CHECK(cudaMemset2DAsync(C, e.img_stride * sizeof(float), 0,
                                          ((g.M - 1) * ldc + e.ohw) * sizeof(float), g.N / e.ohw, st));
  }

  const Format fa = A.format, fb = B.format;
  if (tc) {
    launch_tensor_core(g, fa, fb, splits, st);
    return g.atomic && g.relu;
  }
  const bool b32 = fb == Format::f32;
  switch (fa) {
    case Format::f32: launch_tiled<WidenF32, WidenF32>(g, Staging::near_compute, splits, st); break;
    // (Deft-8 weights take fp32 B: near_weights is near_compute.)
    case Format::half:
      if (b32) launch_tiled<WidenHalf, WidenF32>(g, staging, splits, st);
      else launch_tiled<WidenHalf, WidenHalf>(g, staging, splits, st);
      break;
    case Format::deft16:
      if (b32) launch_tiled<WidenDeft16, WidenF32>(g, staging, splits, st);
      else launch_tiled<WidenDeft16, WidenDeft16>(g, staging, splits, st);
      break;
    case Format::deft16q:
      if (b32) launch_tiled<WidenDeft16Q, WidenF32>(g, staging, splits, st);
      else launch_tiled<WidenDeft16Q, WidenDeft16Q>(g, staging, splits, st);
      break;
    default:
      launch_tiled<WidenDeft8, WidenF32>(
          g, staging == Staging::off_chip ? Staging::off_chip : Staging::near_compute, splits, st);
      break;
  }
  DEFTNN_CUDA_LAUNCHED("gemm_tiled");
  return g.atomic && g.relu;
}

}  // namespace deftnn::cuda
