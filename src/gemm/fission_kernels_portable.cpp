// Fission tile kernel, portable C++: MR = 8, n <= 4, fp32 strips only (the driver decodes a
// reduced strip to fp32 before calling it: no register-level fission without SIMD).
#include "gemm/fission.h"

namespace deftnn::gemm {

void fission_tile__portable(Format, int64_t K, const void* a, const void* b, float* c,
                            int64_t ldc, int m, int n, float alpha, float beta) {
  constexpr int MR = 8;
  const float* af = static_cast<const float*>(a);
  const float* bf = static_cast<const float*>(b);
  float t[4 * MR] = {};
  for (int64_t k = 0; k < K; ++k)
    for (int j = 0; j < n; ++j) {
      const float bj = bf[k * n + j];
      for (int i = 0; i < MR; ++i) t[j * MR + i] += af[k * MR + i] * bj;
    }
  fission_store(t, MR, false, m, n, alpha, beta, c, ldc);
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {

// fp32 B panel straight from the padded, phased image (contract: src/gemm/fission.h).
void panel_f32__portable(const float* src, const int64_t* rowoff, int64_t K, const PanelSeg* seg,
                         int nseg, int nq, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < K; ++k)
    for (int s = 0; s < nseg; ++s) {
      const float* p = src + seg[s].off + rowoff[k];
      for (int t = 0; t < seg[s].len; ++t) d[k * nq + seg[s].lane + t] = p[t];
    }
}

}  // namespace deftnn::gemm
