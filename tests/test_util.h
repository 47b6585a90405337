// Small helpers shared by the test files.
#pragma once
#include <cstdint>
#include <utility>

#include "deftnn/gemm.h"
#include "deftnn/rng.h"
#include "deftnn/tensor.h"

namespace deftnn::test {

// Restores the active GEMM ISA when a test that forces one ends (also on a failed assertion).
class IsaGuard {
 public:
  IsaGuard() : saved_(active_isa()) {}
  ~IsaGuard() { set_active_isa(saved_); }

 private:
  Isa saved_;
};

// A tensor of the given shape filled with standard normal values from a seeded generator.
inline Tensor random_tensor(Shape s, uint64_t seed) {
  Tensor t(std::move(s));
  Rng r(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(r.normal());
  return t;
}

}  // namespace deftnn::test
