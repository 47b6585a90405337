// deftnn: dense fp32 tensors in NCHW order, 64-byte aligned, shared storage.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace deftnn {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);   // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);     // throws Error on negative dims or overflow

// A Tensor owns (shares) 64-byte aligned fp32 storage. Copying a Tensor is shallow (like
// PyTorch); clone() makes a deep copy. A default-constructed Tensor is empty (numel 0, no dims).
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);                 // zero-filled
  Tensor(Shape shape, float fill);
  static Tensor from(Shape shape, const std::vector<float>& values);

  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;                     // negative i counts from the end
  int64_t numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }

  Tensor clone() const;
  void fill(float v);
  void zero() { fill(0.0f); }
  // Same storage, new shape with the same element count (throws otherwise).
  Tensor reshaped(Shape shape) const;
  // Reallocates only when the element count grows; contents are unspecified afterwards.
  void resize(Shape shape);
  // A tensor of the given shape over shared storage of capacity floats (64-byte aligned, at
  // least numel): resize() within the capacity keeps writing there. For buffers shared by
  // tensors whose lifetimes do not overlap (Model's activation memory plan). Contents as found.
  static Tensor over(std::shared_ptr<float> storage, int64_t capacity, Shape shape);

 private:
  Shape shape_;
  int64_t numel_ = 0;
  int64_t capacity_ = 0;
  std::shared_ptr<float> data_;
};

// 64-byte aligned allocation helpers shared by tensors and GEMM packing buffers; 2 MiB and
// larger are 2 MiB aligned and advised for transparent huge pages (DEFTNN_HUGEPAGES=0: not).
float* aligned_alloc_floats(int64_t n);
void aligned_free(void* p);

}  // namespace deftnn
