// Portable reference of fc's transposing store (see transpose_rows.h).
#include "ops/transpose_rows.h"

#include <algorithm>

#include "ops/common.h"

namespace deftnn::ops {

void transpose_bias__portable(const float* yt, int64_t O, int64_t N, const float* b, bool relu,
                              float* y, int64_t o0, int64_t o1) {
  constexpr int64_t kB = 32;   // in tiles: the reads and the writes stay within a few lines
  for (int64_t n0 = 0; n0 < N; n0 += kB)
    for (int64_t oo = o0; oo < o1; oo += kB)
      for (int64_t n = n0; n < std::min(N, n0 + kB); ++n)
        for (int64_t o = oo; o < std::min(o1, oo + kB); ++o) {
          const float v = b ? yt[o * N + n] + b[o] : yt[o * N + n];
          y[n * O + o] = relu ? relu0(v) : v;
        }
}

}  // namespace deftnn::ops
