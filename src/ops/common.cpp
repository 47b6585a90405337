#include "ops/common.h"

#include <cmath>

namespace deftnn::ops {

void fail(const std::string& type, const std::string& msg) { throw Error(type + ": " + msg); }

static std::string list_str(const std::vector<int64_t>& v) { return shape_str(v); }

HW get_hw(const Attrs& a, const std::string& type, const std::string& key) {
  std::vector<int64_t> v;
  try {
    v = a.get_ints(key);
  } catch (const Error& e) {
    fail(type, e.what());
  }
  if (v.size() == 1) return {v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1]};
  fail(type, "attribute '" + key + "' must be an int or a list of 2 ints [h, w], got " +
                 list_str(v));
}

HW get_hw(const Attrs& a, const std::string& type, const std::string& key, HW def) {
  return a.has(key) ? get_hw(a, type, key) : def;
}

std::string Pads::str() const { return shape_str({t, l, b, r}); }

Pads get_pads(const Attrs& a, const std::string& type) {
  Pads p;
  if (a.has("pads")) {
    if (a.has("pad")) fail(type, "give either 'pad' or 'pads', not both");
    std::vector<int64_t> v;
    try {
      v = a.get_ints("pads");
    } catch (const Error& e) {
      fail(type, e.what());
    }
    if (v.size() != 4)
      fail(type, "attribute 'pads' must be a list of 4 ints [top, left, bottom, right], got " +
                     list_str(v));
    p = {v[0], v[1], v[2], v[3]};
  } else {
    HW hw = get_hw(a, type, "pad", {0, 0});
    p = {hw.h, hw.w, hw.h, hw.w};
  }
  if (p.t < 0 || p.l < 0 || p.b < 0 || p.r < 0)
    fail(type, "padding must be non-negative, got " + p.str());
  return p;
}

void check_num_inputs(const std::string& type, const std::vector<Shape>& in, size_t n) {
  if (in.size() != n)
    fail(type, "expects " + std::to_string(n) + " input" + (n == 1 ? "" : "s") + ", got " +
                   std::to_string(in.size()));
}

Shape infer_elementwise(const std::string& type, const std::vector<Shape>& inputs) {
  check_num_inputs(type, inputs, 1);
  check_positive_dims(type, inputs[0]);
  return inputs[0];
}

void check_min_inputs(const std::string& type, const std::vector<Shape>& in, size_t n) {
  if (in.size() < n)
    fail(type, "expects at least " + std::to_string(n) + " inputs, got " +
                   std::to_string(in.size()));
}

void check_rank(const std::string& type, const Shape& s, int rank) {
  if (static_cast<int>(s.size()) != rank)
    fail(type, "expects a rank-" + std::to_string(rank) + " input" +
                   (rank == 4 ? " [N, C, H, W]" : "") + ", got " + shape_str(s));
}

void check_positive_dims(const std::string& type, const Shape& s) {
  if (s.empty()) fail(type, "input has no dimensions");
  for (int64_t d : s)
    if (d <= 0) fail(type, "input " + shape_str(s) + " has a non-positive dimension");
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

int64_t norm_axis(const std::string& type, int64_t axis, size_t rank) {
  int64_t r = static_cast<int64_t>(rank);
  int64_t a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r)
    fail(type, "axis " + std::to_string(axis) + " is out of range for a rank-" +
                   std::to_string(rank) + " input");
  return a;
}

Param& ensure_param(Layer& layer, const std::string& name, const Shape& shape, bool trainable,
                    float lr_mult, float decay_mult, const std::string& why) {
  if (Param* p = layer.param(name)) {
    if (p->value.shape() != shape)
      fail(layer.type(), "parameter '" + name + "' is " + shape_str(p->value.shape()) +
                             " but the input needs " + shape_str(shape) +
                             (why.empty() ? "" : " (" + why + ")"));
    if (p->trainable && p->grad.shape() != shape) p->grad = Tensor(shape);
    return *p;
  }
  // A layer never needs more than 2^31 weights (8 GiB); a larger request comes from a forged or
  // mistyped attribute (out_channels=1e12) and must fail before allocating.
  constexpr int64_t kMaxParamElements = int64_t{1} << 31;
  if (shape_numel(shape) > kMaxParamElements)
    fail(layer.type(), "parameter '" + name + "' of shape " + shape_str(shape) +
                           " is absurdly large (more than 2^31 elements)");
  Param p;
  p.name = name;
  p.value = Tensor(shape);
  if (trainable) p.grad = Tensor(shape);
  p.trainable = trainable;
  p.lr_mult = lr_mult;
  p.decay_mult = decay_mult;
  layer.params().push_back(std::move(p));
  return layer.params().back();
}

void check_filler(const std::string& type, const std::string& filler) {
  if (filler != "xavier" && filler != "gaussian" && filler != "msra")
    fail(type, "attribute 'weight_filler' must be \"xavier\", \"gaussian\" or \"msra\", got \"" +
                   filler + "\"");
}

void fill_weight(Tensor& t, const std::string& filler, double std, int64_t fan_in, Rng& rng) {
  float* w = t.data();
  const int64_t n = t.numel();
  const double fi = static_cast<double>(fan_in > 0 ? fan_in : 1);
  if (filler == "xavier") {
    const float a = static_cast<float>(std::sqrt(3.0 / fi));
    for (int64_t i = 0; i < n; ++i) w[i] = rng.uniform(-a, a);
  } else {
    const double s = filler == "msra" ? std::sqrt(2.0 / fi) : std;
    for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(rng.normal() * s);
  }
}

const Tensor& input(const std::string& type, const std::vector<const Tensor*>& in, size_t i) {
  if (i >= in.size() || in[i] == nullptr)
    fail(type, "input " + std::to_string(i) + " is missing (got " + std::to_string(in.size()) +
                   " inputs)");
  return *in[i];
}

Scratch::~Scratch() { aligned_free(p_); }

float* Scratch::get(int64_t n) {
  if (n > cap_ || !p_) {
    aligned_free(p_);
    p_ = nullptr;
    p_ = aligned_alloc_floats(n);
    cap_ = n;
  }
  return p_;
}

}  // namespace deftnn::ops
