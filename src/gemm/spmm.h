// CSR sparse x dense kernels behind deftnn::spmm (include/deftnn/prune.h), one per ISA, in the
// XNNPACK manner: one file per variant, chosen once from active_isa() in spmm.cpp.
//
// Contract of a row kernel: for every row i in [r0, r1) of the CSR matrix (row_ptr, col_idx,
// values), write C[i, 0..N) = sum over j in [row_ptr[i], row_ptr[i+1]) of
// values[j] * B[col_idx[j], 0..N). B is row-major with row stride ldb, C with ldc; C is
// write-only (an empty row writes zeros). Columns of a row are visited in storage order, each
// output element accumulated in fp32 in that order (the reference accumulates in double).
// N >= 1; N == 1 is SpMV (B is a column with stride ldb). No threading inside: spmm() hands
// row ranges to OpenMP threads. With ldb = 1, col_idx are element offsets into B: each non-zero
// reads the N floats at B + col_idx[j], rows of B anywhere (the direct sparse convolution of
// src/ops/conv.cpp: a weight (c, i, j) reads the input plane c shifted by its tap).
#pragma once
#include <cstdint>

#include "deftnn/gemm.h"

namespace deftnn::gemm {

using SpmmRowsFn = void (*)(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                            int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N,
                            float* C, int64_t ldc);

void spmm_rows_portable(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                        int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                        int64_t ldc);
void spmm_rows_avx2(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                    int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                    int64_t ldc);
void spmm_rows_avx512(const int64_t* row_ptr, const int32_t* col_idx, const float* values,
                      int64_t r0, int64_t r1, const float* B, int64_t ldb, int64_t N, float* C,
                      int64_t ldc);

// The row kernel for an ISA (and its name, when name is non-null).
SpmmRowsFn spmm_rows_kernel(Isa isa, const char** name = nullptr);

}  // namespace deftnn::gemm
