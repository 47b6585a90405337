// CSR weights of pruned layers (src/ops/sparse_weights.h).
#include "ops/sparse_weights.h"

namespace deftnn::ops {

const std::vector<CsrMatrix>* SparseWeightCache::get(const std::string& kind, const float* w,
                                                     int64_t groups, int64_t rows, int64_t K) {
  const int64_t n = groups * rows * K;
  if (key_ != w || size_ != n) {
    invalidate();
    key_ = w;
    size_ = n;
    density_ = weight_density(w, n);
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
