// deftnn GEMM internals: the micro-kernel contract, the GEMV kernels, and the per-ISA config.
//
// The blocked GEMM (gemm.cpp) is the same loops on every ISA (BLIS style): per NC-wide block of
// columns, each thread packs its own copy of the operand every unit needs, for all of K (op(B)'s
// block when the team splits rows, op(A) when it splits columns), then takes work units
// dynamically (groups of MR strips or of NR panels); a unit runs pc over KC (packing only its
// own rows of A or panels of B, or reading a row-major A or B in place where the ISA registers
// a strided kernel)  ->  jr over NR  ->  ir over MR  ->  one micro-kernel call per MR x NR tile
// of C.
// What changes per ISA is only what config.cpp registers: the micro-kernel pointer, MR/NR and
// the KC/MC/NC block sizes (plus the GEMV kernels of the N == 1 / M == 1 path).
//
// ---------------------------------------------------------------------------------------------
// MICRO-KERNEL CONTRACT  (SgemmUkernel)
//   void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
//                int m, int n, float alpha, float beta);
//   a : packed A micro-panel, kc columns of MR floats: element (i, k) is a[k * MR + i].
//       Rows i >= m of a partial panel are zero-padded by the packer. 64-byte aligned.
//   b : packed B micro-panel, kc rows of NR floats: element (k, j) is b[k * NR + j].
//       Columns j >= n are zero-padded by the packer. 64-byte aligned; NR * 4 bytes per row.
//   c : top-left of the C tile, row-major with row stride ldc (no alignment assumed).
//   m, n : the valid part of the tile, 1 <= m <= MR, 1 <= n <= NR. The kernel reads and writes
//       only C[i][j] with i < m, j < n (partial tiles at the right/bottom edges of C).
//   Computes, for i < m, j < n:  C[i][j] = alpha * sum_k a(i,k) * b(k,j) + beta * C[i][j].
//       beta == 0 means C is write-only: it is never read, so NaN/Inf garbage in C does not
//       propagate. The driver passes the caller's beta for the first KC block and beta = 1
//       for the following ones. kc >= 1 (the driver handles K == 0 itself).
//   Kernels broadcast elements of A and load vectors of B (NR is a multiple of the vector width).
//   A kernel may skip the FMAs of whole vectors of B beyond n (narrow right-edge tiles).
// ---------------------------------------------------------------------------------------------
//
// GEMV kernels (the memory-bound N == 1 / M == 1 path; A is streamed once, never packed):
//   gemv_n: y[i * incy] = alpha * sum_k A[i * lda + k] * x[k] + beta * y[i * incy],   i < m
//   gemv_t: y[j]        = alpha * sum_k A[k * lda + j] * x[k] + beta * y[j],          j < n
//   (x contiguous; beta == 0 means y is write-only.) The driver splits rows (gemv_n) or
//   columns (gemv_t) between threads; a kernel call is single-threaded.
#pragma once
#include <cstdint>

#include "deftnn/gemm.h"

namespace deftnn::gemm {

using SgemmUkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              int m, int n, float alpha, float beta);
// The same tile with B read in place: element (k, j) is b[k * ldb + j], any alignment; the kernel
// reads no column j >= n (masked loads), so b may be the caller's row-major matrix.
using SgemmUkernelLdb = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta);
// The same tile with A read in place: element (i, k) is a[i * lda + k], any alignment; rows
// i >= m are not read.
using SgemmUkernelLda = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta);
using GemvNKernel = void (*)(int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
                             const float* x, float beta, float* y, int64_t incy);
using GemvTKernel = void (*)(int64_t k, int64_t n, float alpha, const float* a, int64_t lda,
                             const float* x, float beta, float* y);

// One ISA's registration: the kernels and the blocking the five loops use with them.
struct GemmConfig {
  Isa isa;
  const char* ukernel_name;  // e.g. "sgemm_ukernel_12x32__avx512"
  int mr, nr;                // micro-tile
  int64_t kc, mc, nc;        // cache blocking: kc (L1/L2 depth), mc (A block in L2), nc (B in L3)
  SgemmUkernel ukernel;
  const char* gemv_name;
  GemvNKernel gemv_n;
  GemvTKernel gemv_t;
  SgemmUkernelLdb ukernel_ldb;   // strided-B twin of ukernel, or nullptr (B always packed)
  SgemmUkernelLda ukernel_lda;   // strided-A twin of ukernel, or nullptr (A always packed)
  int64_t kc_lda = 0;            // kc when ukernel_lda reads A in place (0: kc)
};

// The depth of each KC block when K is cut into blocks of at most kc_max: equal blocks
// (K = 1200, kc_max = 1024: two of 600, not 1024 + 176), so no block is a short, inefficient
// tail whose C tile is read and written for little work.
inline int64_t block_kc(int64_t K, int64_t kc_max) {
  const int64_t blocks = (K + kc_max - 1) / kc_max;
  return (K + blocks - 1) / blocks;
}

// Threads for a problem of `flops` on the calling thread's team: 1 inside a parallel region or
// below ~1 MFLOP (the fork and barriers cost more), else omp_get_max_threads(). One rule for
// sgemm, the GEMV, fission GEMM / conv and Winograd (gemm.cpp).
int team_size(double flops);

// The registered config of an ISA (config.cpp, the one place kernels are chosen).
const GemmConfig& gemm_config(Isa isa);

// C[M x N] = beta * C (beta == 0: zeros, C not read): the alpha == 0 / K == 0 result of sgemm,
// sgemm_packed and fission_gemm.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc);

// The argument check of a call on a packed A (sgemm_packed, fission_gemm): throws, naming who,
// when N < 0 or ldb / ldc are too small for op(B) K x N and C M x N.
void check_packed_call(const char* who, int64_t M, int64_t N, int64_t K, bool trans_b,
                       int64_t ldb, int64_t ldc);

// Test hook: overrides the registered kc / mc / nc of every ISA (0 keeps the registered value),
// so tests can force several KC/MC/NC blocks on small matrices. Not thread-safe; tests only.
void set_blocking_override(int64_t kc, int64_t mc, int64_t nc);

void sgemm_ukernel_12x32_ldb__avx512(int64_t kc, const float* a, const float* b, int64_t ldb,
                                     float* c, int64_t ldc, int m, int n, float alpha, float beta);
void sgemm_ukernel_12x32_lda__avx512(int64_t kc, const float* a, int64_t lda, const float* b,
                                     float* c, int64_t ldc, int m, int n, float alpha, float beta);

// Micro-kernels, one file each (ukernel_<MR>x<NR>_<isa>.cpp).
void sgemm_ukernel_6x8__portable(int64_t, const float*, const float*, float*, int64_t, int, int,
                                 float, float);
void sgemm_ukernel_6x16__avx2(int64_t, const float*, const float*, float*, int64_t, int, int,
                              float, float);
void sgemm_ukernel_12x32__avx512(int64_t, const float*, const float*, float*, int64_t, int, int,
                                 float, float);

// GEMV kernels (gemv_<isa>.cpp).
void sgemv_n__portable(int64_t, int64_t, float, const float*, int64_t, const float*, float,
                       float*, int64_t);
void sgemv_t__portable(int64_t, int64_t, float, const float*, int64_t, const float*, float,
                       float*);
void sgemv_n__avx2(int64_t, int64_t, float, const float*, int64_t, const float*, float, float*,
                   int64_t);
void sgemv_t__avx2(int64_t, int64_t, float, const float*, int64_t, const float*, float, float*);
void sgemv_n__avx512(int64_t, int64_t, float, const float*, int64_t, const float*, float, float*,
                     int64_t);
void sgemv_t__avx512(int64_t, int64_t, float, const float*, int64_t, const float*, float,
                     float*);

}  // namespace deftnn::gemm
