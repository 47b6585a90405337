#include "deftnn/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include "deftnn/error.h"

namespace deftnn {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    check(d >= 0, "negative dimension in shape " + shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error("shape " + shape_str(s) + " has too many elements");
    n *= d;
  }
  return n;
}

namespace {
// Buffers of 2 MiB and more are aligned to 2 MiB and advised for transparent huge pages (THP is
// "madvise" on Debian's default kernels): weights, activations and packed panels are walked
// in long strides (a conv's input rows, a GEMM's B rows 12 KiB apart) and missed the 4 KiB
// DTLB. In back-to-back runs, 2 threads: CaffeNet 7.43-7.55 -> 7.15-7.40 ms at batch 1,
// 120-131 -> 119 ms at batch 32, SqueezeNet at batch 16 38-39.5 -> 37.1-37.4 ms, ResNet-18 at
// batch 1 even. DEFTNN_HUGEPAGES=0 turns it off.
constexpr size_t kHugePage = size_t{2} << 20;
bool huge_pages() {
  static const bool on = [] {
    const char* e = std::getenv("DEFTNN_HUGEPAGES");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}
}  // namespace

float* aligned_alloc_floats(int64_t n) {
  if (n <= 0) n = 1;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  const bool huge = bytes >= kHugePage && huge_pages();
  if (huge) bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(huge ? kHugePage : 64, bytes);
  if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
#ifdef MADV_HUGEPAGE
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);   // advice only: failure changes nothing
#endif
  return static_cast<float*>(p);
}

void aligned_free(void* p) { std::free(p); }

Tensor::Tensor(Shape shape) : Tensor(std::move(shape), 0.0f) {}

Tensor::Tensor(Shape shape, float fill_value) : shape_(std::move(shape)) {
  numel_ = shape_numel(shape_);
  capacity_ = numel_;
  data_ = std::shared_ptr<float>(aligned_alloc_floats(numel_), aligned_free);
  fill(fill_value);
}

Tensor Tensor::over(std::shared_ptr<float> storage, int64_t capacity, Shape shape) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  check(storage && capacity >= t.numel_,
        "Tensor::over: " + std::to_string(capacity) + " floats of storage for shape " +
            shape_str(shape));
  t.shape_ = std::move(shape);
  t.capacity_ = capacity;
  t.data_ = std::move(storage);
  return t;
}

Tensor Tensor::from(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape));
  check(static_cast<int64_t>(values.size()) == t.numel(),
        "Tensor::from: " + std::to_string(values.size()) + " values for shape " + shape_str(t.shape()));
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  check(i >= 0 && i < n, "dimension index out of range for shape " + shape_str(shape_));
  return shape_[i];
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  if (numel_) std::memcpy(t.data(), data(), sizeof(float) * numel_);
  return t;
}

void Tensor::fill(float v) {
  if (numel_) std::fill(data(), data() + numel_, v);
}

Tensor Tensor::reshaped(Shape shape) const {
  int64_t n = shape_numel(shape);
  check(n == numel_, "cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

void Tensor::resize(Shape shape) {
  int64_t n = shape_numel(shape);
  if (n > capacity_ || !data_) {
    data_ = std::shared_ptr<float>(aligned_alloc_floats(n), aligned_free);
    capacity_ = n;
  }
  shape_ = std::move(shape);
  numel_ = n;
}

}  // namespace deftnn
