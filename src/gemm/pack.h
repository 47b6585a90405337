// deftnn GEMM packing: copies a block of op(A) / op(B) into the layouts the micro-kernel reads
// (see the contract in ukernel.h), resolving transposes and zero-padding partial panels.
#pragma once
#include <cstdint>

namespace deftnn::gemm {

// Packs op(A)[0:mc, 0:kc] into ceil(mc / mr) strips of mr x kc, strip s at dst + s * mr * kc,
// element (i, k) of a strip at [k * mr + i]; rows beyond mc in the last strip are zeros.
// op(A)(i, k) = trans_a ? a[k * lda + i] : a[i * lda + k].
void pack_a(bool trans_a, int64_t mc, int64_t kc, const float* a, int64_t lda, int mr, float* dst);

// Packs the NR-wide panels p0 <= p < p1 of op(B)[0:kc, 0:nc]: panel p holds columns
// [p * nr, p * nr + nr) at dst + p * nr * kc, element (k, j) at [k * nr + j]; columns beyond nc
// are zeros. op(B)(k, j) = trans_b ? b[j * ldb + k] : b[k * ldb + j].
void pack_b(bool trans_b, int64_t kc, int64_t nc, const float* b, int64_t ldb, int nr,
            int64_t p0, int64_t p1, float* dst);

}  // namespace deftnn::gemm
