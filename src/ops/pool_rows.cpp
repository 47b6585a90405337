#include "ops/pool_rows.h"

#include <algorithm>
#include <limits>

namespace deftnn::ops {

void max_row__portable(const float* t, int64_t n, int64_t kw, int64_t sw, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* tw = t + i * sw;
    float m = tw[0];
    for (int64_t j = 1; j < kw; ++j) m = std::max(m, tw[j]);
    y[i] = m;
  }
}

void max_rows3_k3s2__portable(const float* r0, const float* r1, const float* r2, int64_t n,
                              int64_t w0, int64_t w1, float* y) {
  auto v = [&](int64_t w) {
    return w >= w0 && w < w1 ? std::max(std::max(r0[w], r1[w]), r2[w])
                             : -std::numeric_limits<float>::infinity();
  };
  for (int64_t i = 0; i < n; ++i) {
    float m = v(2 * i);
    m = std::max(m, v(2 * i + 1));
    y[i] = std::max(m, v(2 * i + 2));
  }
}

void max_rows2_k2s2__portable(const float* r0, const float* r1, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = std::max(std::max(r0[2 * i], r0[2 * i + 1]), std::max(r1[2 * i], r1[2 * i + 1]));
}

}  // namespace deftnn::ops
