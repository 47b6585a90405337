// deftnn: AVX512-BF16 fast paths (vcvtne2ps2bf16) of the bf16 conversions (see src/formats/simd.h).
#include "formats/simd.h"

namespace deftnn::formats_simd {

bool encode_supported_avx512bf16(Format, Rounding) { return false; }
bool encode_avx512bf16(Format, Rounding, const float*, void*, int64_t) { return false; }
void pack_bf16_pairs_avx512bf16(const float* B, int64_t ldb, int64_t K, int64_t N,
                                uint16_t* dst) {
  for (int64_t k = 0; k < K; k += 2)
    for (int64_t n = 0; n < N; ++n)
      for (int t = 0; t < 2; ++t)
        dst[(k / 2) * N * 2 + n * 2 + t] = k + t < K ? bf16_from_float(B[(k + t) * ldb + n]) : 0;
}

}  // namespace deftnn::formats_simd
