// TEMPORARY stand-in until the blocked GEMM lands: forwards to the reference.
#include "deftnn/gemm.h"
#include "deftnn/error.h"

namespace deftnn {
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable: return "portable";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
  }
  return "?";
}
Isa isa_from_name(const std::string& n) {
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16})
    if (n == isa_name(i)) return i;
  throw Error("unknown ISA '" + n + "' (expected portable, avx2, avx512 or avx512_bf16)");
}
Isa detected_isa() { return Isa::portable; }
Isa active_isa() { return Isa::portable; }
void set_active_isa(Isa) {}
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
}  // namespace deftnn
