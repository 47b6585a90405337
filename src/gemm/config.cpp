// deftnn GEMM configuration: the ONE place where each ISA's micro-kernel, tile and cache
// blocking are registered (like BLIS config/<arch> and XNNPACK's config). The loops in gemm.cpp
// never change per ISA. Block sizes measured on AMD Zen 4 (L1d 32 KiB, L2 1 MiB, L3 32 MiB).
#include "gemm/ukernel.h"

namespace deftnn::gemm {
namespace {

// kc * nr * 4 bytes of B micro-panel, mc * kc * 4 bytes of A block (L2), kc * nc * 4 of B (L3).
// kc is the largest KC block; the driver cuts K into equal blocks no deeper (block_kc).
// AVX-512 and AVX2 kc measured on Zen 5 (L1d 48 KiB, L2 1 MiB), 2 threads, KC blocks of at most
// 384 / 256 before: C tiles are read and written once per KC block, and the deeper blocks run
// 1024^3 1.10x faster (AVX-512, 1024; AVX2 1.05x, 512), CaffeNet conv2/conv3/conv5 shapes
// 1.04-1.06x, fc6/fc7 at batch 64 1.03-1.06x. Where A is read in place (ukernel_lda: few
// panels, conv4's shape) the B panel has to stay in L1, and 384 stays 1.07x faster than 864.
const GemmConfig kPortable{Isa::portable, "sgemm_ukernel_6x8__portable", 6, 8, 256, 120, 4096,
                           sgemm_ukernel_6x8__portable, "sgemv__portable", sgemv_n__portable,
                           sgemv_t__portable, nullptr, nullptr};
const GemmConfig kAvx2{Isa::avx2, "sgemm_ukernel_6x16__avx2", 6, 16, 512, 144, 4096,
                       sgemm_ukernel_6x16__avx2, "sgemv__avx2", sgemv_n__avx2, sgemv_t__avx2,
                       nullptr, nullptr};
const GemmConfig kAvx512{Isa::avx512, "sgemm_ukernel_12x32__avx512", 12, 32, 1024, 144, 4096,
                         sgemm_ukernel_12x32__avx512, "sgemv__avx512", sgemv_n__avx512,
                         sgemv_t__avx512, sgemm_ukernel_12x32_ldb__avx512,
                         sgemm_ukernel_12x32_lda__avx512, 384};
// avx512_bf16 adds nothing to fp32 GEMM: it runs the AVX-512 kernels (bf16 is for fission).
const GemmConfig kAvx512Bf16{Isa::avx512_bf16, "sgemm_ukernel_12x32__avx512", 12, 32, 1024, 144,
                             4096, sgemm_ukernel_12x32__avx512, "sgemv__avx512",
                             sgemv_n__avx512, sgemv_t__avx512, sgemm_ukernel_12x32_ldb__avx512,
                             sgemm_ukernel_12x32_lda__avx512, 384};

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
