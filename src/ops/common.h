// Internal helpers shared by the layers in src/ops: attribute parsing into typed geometry,
// shape checks with messages that name the layer, parameter creation, thread-local scratch.
#pragma once
#include <omp.h>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "deftnn/tensor.h"

namespace deftnn::ops {

[[noreturn]] void fail(const std::string& type, const std::string& msg);

// A [h, w] pair read from an int or a list of 1 or 2 ints.
struct HW {
  int64_t h = 0, w = 0;
};
HW get_hw(const Attrs& a, const std::string& type, const std::string& key);
HW get_hw(const Attrs& a, const std::string& type, const std::string& key, HW def);

// Padding: `pad` (int or [ph, pw], symmetric) or `pads` ([top, left, bottom, right], ONNX order
// for 2-D is [top, left, bottom, right] = [h_begin, w_begin, h_end, w_end]).
struct Pads {
  int64_t t = 0, l = 0, b = 0, r = 0;
  bool zero() const { return t == 0 && l == 0 && b == 0 && r == 0; }
  std::string str() const;
};
Pads get_pads(const Attrs& a, const std::string& type);

// Input checks, throwing "type: ..." errors.
void check_num_inputs(const std::string& type, const std::vector<Shape>& in, size_t n);
void check_min_inputs(const std::string& type, const std::vector<Shape>& in, size_t n);
void check_rank(const std::string& type, const Shape& s, int rank);
void check_positive_dims(const std::string& type, const Shape& s);
int64_t prod(const Shape& s, size_t from, size_t to);   // product of dims [from, to)
// Normalises a possibly negative axis against rank; throws naming the layer.
int64_t norm_axis(const std::string& type, int64_t axis, size_t rank);

// Finds a parameter by name, or creates it zero-filled (grad too when trainable). If it exists,
// checks its shape and throws naming the layer, the parameter and both shapes.
Param& ensure_param(Layer& layer, const std::string& name, const Shape& shape, bool trainable,
                    float lr_mult, float decay_mult, const std::string& why);

// Fills `t` with a Caffe filler: "xavier" (uniform +-sqrt(3/fan_in)), "gaussian" (N(0, std)),
// "msra" (N(0, sqrt(2/fan_in))).
void fill_weight(Tensor& t, const std::string& filler, double std, int64_t fan_in, Rng& rng);
void check_filler(const std::string& type, const std::string& filler);

// Forward/backward helpers for checked access to inputs.
const Tensor& input(const std::string& type, const std::vector<const Tensor*>& in, size_t i);

// Grows-only aligned float buffer (hot paths avoid per-call allocation).
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch(Scratch&& o) noexcept : p_(o.p_), cap_(o.cap_) { o.p_ = nullptr; o.cap_ = 0; }
  ~Scratch();
  float* get(int64_t n);   // at least n floats; contents unspecified
 private:
  float* p_ = nullptr;
  int64_t cap_ = 0;
};

// Elementwise loops are parallelised only above this many elements.
constexpr int64_t kParallelMin = 1 << 15;

// Shape inference of an elementwise layer: one input, with positive dims, output of its shape.
Shape infer_elementwise(const std::string& type, const std::vector<Shape>& inputs);

// [begin, end) of thread t's share of n elements, cut at multiples of 16 floats (one cache line).
inline std::pair<int64_t, int64_t> thread_share(int64_t n, int t, int nt) {
  auto cut = [&](int k) { return k == nt ? n : (n * k / nt) & ~int64_t{15}; };
  return {cut(t), cut(t + 1)};
}

// The relu layer's operation with slope 0, as every fused ReLU applies it: v > 0 ? v : 0 * v
// (a negative v gives -0, NaN stays NaN), so that a fused output is bitwise the separate layer's.
inline float relu0(float v) {
  const float z = 0.0f * v;
  return v > 0.0f ? v : z;
}

// The fused output pass (RunContext::fused) on n consecutive outputs: v = y (+ residual)
// (ReLU), with the float operations of the separate add and relu layers.
inline void finish(float* y, const float* res, bool relu, int64_t n) {
  if (res)
    for (int64_t p = 0; p < n; ++p) y[p] += res[p];
  if (relu)
    for (int64_t p = 0; p < n; ++p) y[p] = relu0(y[p]);
}

// Runs body(begin, end) over [0, n): split across the threads when n is large and not already
// inside a parallel region, else in one call, with shares cut on cache lines.
template <class Body>
void parallel_ranges(int64_t n, Body body) {
  if (n >= kParallelMin && !omp_in_parallel()) {
#pragma omp parallel
    {
      const auto [b, e] = thread_share(n, omp_get_thread_num(), omp_get_num_threads());
      if (b < e) body(b, e);
    }
  } else {
    body(int64_t{0}, n);
  }
}

// out[i] = f(x[i]) (out resized to x's shape), in parallel when large.
template <class F>
void map_elementwise(const Tensor& x, Tensor& out, F f) {
  out.resize(x.shape());
  const float* __restrict xd = x.data();
  float* __restrict y = out.data();
  parallel_ranges(x.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = f(xd[i]);
  });
}

// out[i] = f(a[i], b[i]) for two tensors of the same size (out resized to a's shape).
template <class F>
void map_elementwise(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  out.resize(a.shape());
  const float* __restrict ad = a.data();
  const float* __restrict bd = b.data();
  float* __restrict y = out.data();
  parallel_ranges(a.numel(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = f(ad[i], bd[i]);
  });
}

}  // namespace deftnn::ops
