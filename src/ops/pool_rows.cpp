#include "ops/pool_rows.h"

#include <algorithm>

namespace deftnn::ops {

void max_row__portable(const float* t, int64_t n, int64_t kw, int64_t sw, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* tw = t + i * sw;
    float m = tw[0];
    for (int64_t j = 1; j < kw; ++j) m = std::max(m, tw[j]);
    y[i] = m;
  }
}

}  // namespace deftnn::ops
