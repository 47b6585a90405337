#include "ops/lrn_rows.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace deftnn::ops {

void lrn_b075__portable(const float* x, int64_t C, int64_t S, int64_t pre, int64_t post, float a,
                        float k, int64_t s0, int64_t s1, float* y) {
  std::vector<float> acc(static_cast<size_t>(s1 - s0), 0.0f);
  auto add = [&](int64_t c, bool sub) {
    const float* r = x + c * S;
    for (int64_t s = s0; s < s1; ++s)
      acc[s - s0] = sub ? std::fma(-r[s], r[s], acc[s - s0]) : std::fma(r[s], r[s], acc[s - s0]);
  };
  for (int64_t c = 0; c < std::min(post, C); ++c) add(c, false);
  for (int64_t c = 0; c < C; ++c) {
    if (c + post < C) add(c + post, false);
    if (c - pre - 1 >= 0) add(c - pre - 1, true);
    const float* r = x + c * S;
    float* o = y + c * S;
    for (int64_t s = s0; s < s1; ++s) {
      const float sc = std::fma(a, std::max(acc[s - s0], 0.0f), k);
      const float q = std::sqrt(sc);
      o[s] = r[s] / (q * std::sqrt(q));
    }
  }
}

}  // namespace deftnn::ops
