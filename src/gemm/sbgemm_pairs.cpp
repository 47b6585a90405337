// bf16 weights-broadcast GEMM (sbgemm_pairs.h): the 12-row K-pair packing of the weights and
// the driver around the AVX512-BF16 tile.
#include "gemm/sbgemm_pairs.h"

#include <omp.h>

#include <algorithm>

#include "deftnn/error.h"
#include "gemm/buffer.h"
#include "gemm/ukernel.h"

namespace deftnn::gemm {

Bf16RowStrips::Bf16RowStrips(const float* W, int64_t M, int64_t K, Rounding rounding)
    : M_(M), K_(K) {
  check(M > 0 && K > 0, "Bf16RowStrips: empty weights");
  check(rounding != Rounding::stochastic, "Bf16RowStrips: stochastic rounding is not supported");
  const int64_t KP = pairs(), S = strips();
  words_.assign(static_cast<size_t>(S * 12 * KP), 0u);
#pragma omp parallel for schedule(static) if (M * K >= (int64_t{1} << 20))
  for (int64_t s = 0; s < S; ++s)
    for (int i = 0; i < 12; ++i) {
      const int64_t o = s * 12 + i;
      if (o >= M) break;
      uint32_t* d = words_.data() + s * 12 * KP + i;
      const float* w = W + o * K;
      for (int64_t kp = 0; kp < KP; ++kp) {
        const uint32_t lo = bf16_from_float(w[2 * kp], rounding);
        const uint32_t hi = 2 * kp + 1 < K ? bf16_from_float(w[2 * kp + 1], rounding) : 0u;
        d[kp * 12] = lo | hi << 16;
      }
    }
}

namespace {
thread_local Buffer t_panels;   // the caller's B panels (shared by its team)
}  // namespace

void bf16_row_strips_gemm(const Bf16RowStrips& w, int64_t N, const float* X, int64_t ldx,
                          float* yt) {
  check(!w.empty() && N >= 1 && ldx >= w.depth(), "bf16_row_strips_gemm: bad operands");
  const int64_t M = w.rows(), K = w.depth(), KP = w.pairs(), S = w.strips();
  const int64_t panels = (N + 31) / 32;
  uint32_t* B = reinterpret_cast<uint32_t*>(t_panels.get(panels * KP * 32));
  const int nt = team_size(2.0 * static_cast<double>(M) * N * K);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t team = omp_get_num_threads(), tid = omp_get_thread_num();
    // Each thread packs its own range of pairs of every panel (disjoint lines), then all wait.
    for (int64_t p = 0; p < panels; ++p)
      pack_pairs_panel32__avx512bf16(X + p * 32 * ldx, ldx,
                                     static_cast<int>(std::min<int64_t>(32, N - 32 * p)), K,
                                     KP * tid / team, KP * (tid + 1) / team, B + p * KP * 32);
#pragma omp barrier
    // A contiguous share of the strips per thread: each streams its weights once, in order.
    for (int64_t s = S * tid / team; s < S * (tid + 1) / team; ++s)
      for (int64_t p = 0; p < panels; ++p)
        sbgemm_pairs_12x32__avx512bf16(KP, w.strip(s), B + p * KP * 32, yt + s * 12 * N + p * 32,
                                       N, static_cast<int>(std::min<int64_t>(12, M - 12 * s)),
                                       static_cast<int>(std::min<int64_t>(32, N - 32 * p)));
  }
}

}  // namespace deftnn::gemm
