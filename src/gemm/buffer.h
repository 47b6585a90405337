// A grow-only, 64-byte aligned float buffer for the GEMM drivers' per-thread scratch
// (thread_local): allocated on the first call, reused by every later one.
#pragma once
#include <cstdint>

#include "deftnn/tensor.h"

namespace deftnn::gemm {

struct Buffer {
  float* p = nullptr;
  int64_t cap = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { aligned_free(p); }
  float* get(int64_t n) {   // at least n floats; contents unspecified
    if (n > cap) {
      aligned_free(p);
      p = aligned_alloc_floats(n);
      cap = n;
    }
    return p;
  }
};

}  // namespace deftnn::gemm
