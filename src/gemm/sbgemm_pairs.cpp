// bf16 weights-broadcast GEMM (sbgemm_pairs.h): the 12-row K-pair packing of the weights and
// the driver around the AVX512-BF16 tile.
#include "gemm/sbgemm_pairs.h"

#include <omp.h>

#include <algorithm>

#include "deftnn/error.h"
#include "deftnn/tensor.h"
#include "gemm/buffer.h"
#include "gemm/ukernel.h"

namespace deftnn::gemm {

Bf16RowStrips::Bf16RowStrips(const float* W, int64_t M, int64_t K, Rounding rounding)
    : M_(M), K_(K) {
  check(M > 0 && K > 0, "Bf16RowStrips: empty weights");
  check(rounding != Rounding::stochastic, "Bf16RowStrips: stochastic rounding is not supported");
  const int64_t KP = pairs(), S = strips();
  words_ = std::shared_ptr<uint32_t>(
      reinterpret_cast<uint32_t*>(aligned_alloc_floats(S * 12 * KP)),
      [](uint32_t* p) { aligned_free(p); });
  // The last strip zeroed first: its rows past M stay 0.
  std::fill(words_.get() + (S - 1) * 12 * KP, words_.get() + S * 12 * KP, 0u);
  // Each row encoded by the bulk (SIMD) encoder into 2 * KP codes (an odd K's last one 0): its
  // KP words in memory order, then spread over the strip (fc6: 4096 x 9216 in ~1/10 the time of
  // a scalar bf16_from_float per element).
#pragma omp parallel if (M * K >= (int64_t{1} << 20))
  {
    std::vector<uint32_t> row(static_cast<size_t>(KP));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < M; ++o) {
      row.back() = 0;
      encode(Format::bf16, rounding, W + o * K, row.data(), K);
      uint32_t* d = words_.get() + (o / 12) * 12 * KP + o % 12;
      for (int64_t kp = 0; kp < KP; ++kp) d[kp * 12] = row[static_cast<size_t>(kp)];
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
  // Panels in groups of up to 8 (256 samples): the packed B stays bounded (fc6: 4.7 MB a group)
  // whatever the batch; the weights are streamed once a group.
  constexpr int64_t kGroup = 8;
  uint32_t* B = reinterpret_cast<uint32_t*>(t_panels.get(std::min(panels, kGroup) * KP * 32));
  const int nt = team_size(2.0 * static_cast<double>(M) * N * K);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t team = omp_get_num_threads(), tid = omp_get_thread_num();
    for (int64_t p0 = 0; p0 < panels; p0 += kGroup) {
      const int64_t p1 = std::min(panels, p0 + kGroup);
      if (p0 > 0) {
#pragma omp barrier
      }
      // Each thread packs its own range of pairs of every panel (disjoint lines), then all wait.
      for (int64_t p = p0; p < p1; ++p)
        pack_pairs_panel32__avx512bf16(X + p * 32 * ldx, ldx,
                                       static_cast<int>(std::min<int64_t>(32, N - 32 * p)), K,
                                       KP * tid / team, KP * (tid + 1) / team,
                                       B + (p - p0) * KP * 32);
#pragma omp barrier
      // A contiguous share of the strips per thread: each streams its weights once, in order.
      for (int64_t s = S * tid / team; s < S * (tid + 1) / team; ++s)
        for (int64_t p = p0; p < p1; ++p)
          sbgemm_pairs_12x32__avx512bf16(KP, w.strip(s), B + (p - p0) * KP * 32,
                                         yt + s * 12 * N + p * 32, N,
                                         static_cast<int>(std::min<int64_t>(12, M - 12 * s)),
                                         static_cast<int>(std::min<int64_t>(32, N - 32 * p)));
    }
  }
}

}  // namespace deftnn::gemm
