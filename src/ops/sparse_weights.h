// Sparse inference of a pruned conv or fc layer (include/deftnn/prune.h, SparsePolicy): the
// fp32 weights in CSR, one matrix per group, built on the first inference forward of a frozen
// model that the policy runs sparse, and kept like the packed weights. Dropped by the layer's
// invalidate(), by a training forward and by a change of the weight tensor's data pointer or
// size; changing weight values in place after an inference forward needs invalidate(), as for
// the packed weights (src/ops/fission_weights.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "deftnn/prune.h"

namespace deftnn::ops {

class SparseWeightCache {
 public:
  // The CSR matrices of w (groups blocks of rows x K, row-major) when the policy runs a layer of
  // this kind ("conv", "fc") at w's density sparse (sparse_pays), else null. The density is
  // counted once per weight tensor.
  const std::vector<CsrMatrix>* get(const std::string& kind, const float* w, int64_t groups,
                                    int64_t rows, int64_t K);
  // Non-zeros / weights of the tensor last passed to get (-1: none yet).
  double density() const { return density_; }
  // Changes whenever the matrices are built again (for caches derived from them).
  uint64_t generation() const { return generation_; }
  void invalidate() {
    key_ = nullptr;
    size_ = 0;
    density_ = -1;
    mats_.clear();
  }

 private:
  const float* key_ = nullptr;
  int64_t size_ = 0;
  double density_ = -1;
  std::vector<CsrMatrix> mats_;
  uint64_t generation_ = 0;
};

}  // namespace deftnn::ops
