// CSR weights of pruned layers (src/ops/sparse_weights.h).
#include "ops/sparse_weights.h"

#include <algorithm>

namespace deftnn::ops {

const std::vector<CsrMatrix>* SparseWeightCache::get(const std::string& kind, const float* w,
                                                     int64_t groups, int64_t rows, int64_t K) {
  const int64_t n = groups * rows * K;
  if (key_ != w || size_ != n) {
    invalidate();
    const int64_t nnz = std::count_if(w, w + n, [](float v) { return v != 0.0f; });
    key_ = w;
    size_ = n;
    density_ = n > 0 ? static_cast<double>(nnz) / static_cast<double>(n) : 1.0;
  }
  if (n == 0 || !sparse_pays(kind, density_, rows, K)) return nullptr;
  if (mats_.empty()) {
    ++generation_;
    for (int64_t gi = 0; gi < groups; ++gi)
      mats_.push_back(CsrMatrix::from_dense(w + gi * rows * K, rows, K, K));
  }
  return &mats_;
}

}  // namespace deftnn::ops
