// Inference-time fission weights of conv and fc (see fission_weights.h).
#include "ops/fission_weights.h"

#include "deftnn/error.h"
#include "ops/common.h"

namespace deftnn::ops {

FissionConvShape fission_conv_shape(const ConvGeom& g, int64_t images, int64_t image_stride) {
  FissionConvShape s;
  s.C = g.C;
  s.H = g.H;
  s.W = g.W;
  s.kh = g.kh;
  s.kw = g.kw;
  s.sh = g.sh;
  s.sw = g.sw;
  s.pt = g.pt;
  s.pl = g.pl;
  s.dh = g.dh;
  s.dw = g.dw;
  s.OH = g.OH;
  s.OW = g.OW;
  s.images = images;
  s.image_stride = image_stride;
  return s;
}

const std::vector<std::string>& fission_attr_keys() {
  static const std::vector<std::string> k{"format", "fission_mode", "rounding"};
  return k;
}

bool is_fission_attr(const std::string& key) {
  for (const auto& k : fission_attr_keys())
    if (k == key) return true;
  return false;
}

FissionSetting parse_fission_attrs(const Attrs& a, const std::string& type) {
  FissionSetting s;
  const std::string f = a.get_str("format", "f32");
  try {
    s.format = format_from_name(f);
  } catch (const Error& e) {
    fail(type, std::string("attribute 'format': ") + e.what());
  }
  if (!fission_supports(s.format))
    fail(type, "attribute 'format' is '" + f + "', which the fission GEMM does not support");
  const std::string m = a.get_str("fission_mode", "fission");
  if (m == "fission") s.mode = FissionMode::fission;
  else if (m == "offchip") s.mode = FissionMode::offchip;
  else if (m == "bf16_dot") s.mode = FissionMode::bf16_dot;
  else
    fail(type, "attribute 'fission_mode' is '" + m +
                   "', expected 'fission', 'offchip' or 'bf16_dot'");
  const std::string r = a.get_str("rounding", "nearest_even");
  try {
    s.rounding = rounding_from_name(r);
  } catch (const Error& e) {
    fail(type, std::string("attribute 'rounding': ") + e.what());
  }
  return s;
}

const std::vector<FissionPackedA>& FissionWeightCache::get(const FissionSetting& s, const float* w,
                                                           int64_t groups, int64_t rows,
                                                           int64_t K, int64_t conv_c,
                                                           int64_t conv_taps, int64_t tap_kw) {
  const bool pairs = conv_c > 0 && conv_c * conv_taps == K && s.mode != FissionMode::offchip &&
                     (tap_kw == 0 || (tap_kw > 0 && conv_taps % tap_kw == 0));
  if (!pairs) conv_c = conv_taps = tap_kw = 0;
  const bool same = key_ == w && groups_ == groups && rows_ == rows && k_ == K &&
                    conv_c_ == conv_c && conv_taps_ == conv_taps && tap_kw_ == tap_kw &&
                    setting_ == s && static_cast<int64_t>(packed_.size()) == groups;
  if (same) return packed_;
  packed_.clear();
  packed_.reserve(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) {
    if (pairs && tap_kw > 0)
      packed_.push_back(FissionPackedA::conv_tap_pairs(s.format, s.rounding, rows, conv_c,
                                                       conv_taps / tap_kw, tap_kw,
                                                       w + g * rows * K, 0, s.mode));
    else if (pairs)
      packed_.push_back(FissionPackedA::conv_channel_pairs(s.format, s.rounding, rows, conv_c,
                                                           conv_taps, w + g * rows * K, 0,
                                                           s.mode));
    else
      packed_.emplace_back(s.format, s.rounding, false, rows, K, w + g * rows * K, K, 0, s.mode);
  }
  key_ = w;
  groups_ = groups;
  rows_ = rows;
  k_ = K;
  conv_c_ = conv_c;
  conv_taps_ = conv_taps;
  tap_kw_ = tap_kw;
  setting_ = s;
  return packed_;
}

}  // namespace deftnn::ops
