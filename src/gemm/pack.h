// deftnn GEMM packing: copies a block of op(A) / op(B) into the layouts the micro-kernel reads
// (see the contract in ukernel.h), resolving transposes and zero-padding partial panels.
#pragma once
#include <cstdint>

namespace deftnn::gemm {

// Packs op(A)[0:mc, 0:kc] into ceil(mc / mr) strips of mr x kc, strip s at dst + s * mr * kc,
// element (i, k) of a strip at [k * mr + i]; rows beyond mc in the last strip are zeros.
// op(A)(i, k) = trans_a ? a[k * lda + i] : a[i * lda + k].
// With kidx (synapse vector elimination, paper §4.1.1: the input reorganisation happens here,
// in the packing step, not in a separate gather pass) column k of the block is column kidx[k]
// of the stored matrix: op(A)(i, k) = trans_a ? a[kidx[k] * lda + i] : a[i * lda + kidx[k]],
// with a at the stored matrix's column 0 (the caller offsets kidx by the block's first k).
void pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, int mr, float* dst,
            const int64_t* kidx = nullptr);

// Packs the NR-wide panels p0 <= p < p1 of op(B)[0:kc, 0:nc]: panel p holds columns
// [p * nr, p * nr + nr) at dst + p * nr * kc, element (k, j) at [k * nr + j]; columns beyond nc
// are zeros. op(B)(k, j) = trans_b ? b[j * ldb + k] : b[k * ldb + j].
// With kidx, row k of the block is row kidx[k] of the stored op(B):
// op(B)(k, j) = trans_b ? b[j * ldb + kidx[k]] : b[kidx[k] * ldb + j] (b at row 0, as for A).
void pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, int nr,
            int64_t p0, int64_t p1, float* dst, const int64_t* kidx = nullptr);

// Rows [0, kc) of one 32-wide panel of a transposed op(B) with a row index: d[k * 32 + j] =
// b[j * ldb + kidx[k]] for j < n, else 0; each row two gathers from the stored rows, one lane
// per column, no transpose (src/gemm/pack_avx512.cpp; AVX-512 CPUs only; the lane offsets,
// up to 15 * ldb elements scaled by 4, must fit a signed 32-bit index).
void pack_b_idx_t32_rows__avx512(int64_t kc, int n, const float* b, int64_t ldb,
                                 const int64_t* kidx, float* d);

}  // namespace deftnn::gemm
