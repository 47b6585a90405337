// deftnn GEMM configuration: the ONE place where each ISA's micro-kernel, tile and cache
// blocking are registered (like BLIS config/<arch> and XNNPACK's config). The loops in gemm.cpp
// never change per ISA. Block sizes measured on AMD Zen 4 (L1d 32 KiB, L2 1 MiB, L3 32 MiB).
#include "gemm/ukernel.h"

namespace deftnn::gemm {
namespace {

// kc * nr * 4 bytes of B micro-panel, mc * kc * 4 bytes of A block (L2), kc * nc * 4 of B (L3).
const GemmConfig kPortable{Isa::portable, "sgemm_ukernel_6x8__portable", 6, 8, 256, 120, 4096,
                           sgemm_ukernel_6x8__portable, "sgemv__portable", sgemv_n__portable,
                           sgemv_t__portable, nullptr, nullptr};
const GemmConfig kAvx2{Isa::avx2, "sgemm_ukernel_6x16__avx2", 6, 16, 256, 144, 4096,
                       sgemm_ukernel_6x16__avx2, "sgemv__avx2", sgemv_n__avx2, sgemv_t__avx2,
                       nullptr, nullptr};
const GemmConfig kAvx512{Isa::avx512, "sgemm_ukernel_12x32__avx512", 12, 32, 384, 144, 4096,
                         sgemm_ukernel_12x32__avx512, "sgemv__avx512", sgemv_n__avx512,
                         sgemv_t__avx512, sgemm_ukernel_12x32_ldb__avx512,
                         sgemm_ukernel_12x32_lda__avx512};
// avx512_bf16 adds nothing to fp32 GEMM: it runs the AVX-512 kernels (bf16 is for fission).
const GemmConfig kAvx512Bf16{Isa::avx512_bf16, "sgemm_ukernel_12x32__avx512", 12, 32, 384, 144,
                             4096, sgemm_ukernel_12x32__avx512, "sgemv__avx512",
                             sgemv_n__avx512, sgemv_t__avx512, sgemm_ukernel_12x32_ldb__avx512,
                             sgemm_ukernel_12x32_lda__avx512};

}  // namespace

const GemmConfig& gemm_config(Isa isa) {
  switch (isa) {
    case Isa::portable: return kPortable;
    case Isa::avx2: return kAvx2;
    case Isa::avx512: return kAvx512;
    case Isa::avx512_bf16: return kAvx512Bf16;
  }
  return kPortable;
}

}  // namespace deftnn::gemm
