// Inference-time near-compute data fission for the GEMM layers (conv, fc; issue 4).
//
// Attributes (all optional, read by conv and fc):
//   format        a formats.h name: "f32" (default: the fp32 sgemm, bit for bit the layer without
//                 the attribute), "half", "deft16", "deft16q", "bf16", "deft8_e1".."deft8_e7",
//                 ... (any format fission_supports()).
//   fission_mode  "fission" (default: widened in registers next to the FMA) or "offchip" (the
//                 §5.8 baseline: compressed in memory, widened to fp32 panels when packed).
//   rounding      how the weights are encoded: "nearest_even" (default), "truncate" (the paper's
//                 Deft-16), "stochastic" (seed 0, reproducible).
// Only an inference forward (ctx.training == false) uses the format; training forward and
// backward always run the fp32 weights. The weights are packed on the first inference forward
// and cached. The cache is dropped by a training forward, by infer(), by a change of these
// attributes (Layer::set_attr) and by Layer::invalidate(); a change of the weight tensor's data
// pointer or shape is also detected. Changing weight VALUES in place outside training after an
// inference forward needs Layer::invalidate() (checking the values would read the fp32 weights
// on every call, which is what the reduced format is there to avoid).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/layer.h"
#include "ops/im2col.h"

namespace deftnn::ops {

// The fission_conv geometry of one group of a convolution over `images` images side by side,
// x of consecutive images `image_stride` floats apart.
FissionConvShape fission_conv_shape(const ConvGeom& g, int64_t images, int64_t image_stride);

struct FissionSetting {
  Format format = Format::f32;
  FissionMode mode = FissionMode::fission;
  Rounding rounding = Rounding::nearest_even;
  bool active() const { return format != Format::f32; }
  bool operator==(const FissionSetting&) const = default;
  // A software-widened format (all but bf16, whose kernels round the activations too) in
  // fission mode.
  bool software_widened() const {
    return active() && format != Format::bf16 && mode == FissionMode::fission;
  }
};

// Output columns per call (pixels over the batch) from which a conv in a software-widened
// format is bound by its FMAs rather than its weight stream, and runs on weights widened once
// from the format instead of widening them in every tile (ops/conv.cpp; the roofline of
// graph/precision.cpp counts such weights as fp32).
constexpr int64_t kConvWideColumns = 128;
// Whether such a conv widens its weights once: only where the fp32 conv runs the AVX-512
// direct tiles (or Winograd). The AVX2 convs multiply B panels by 6x16 tiles that read more A
// per FMA; there the 16-bit A of the fission tiles kept CaffeNet's conv4 / conv5 at batch 32
// 1.06-1.08x faster than fp32, and widened once they were 0.97-1.0x.
inline bool conv_widens_once(const FissionSetting& s, int64_t columns, Isa isa) {
  return s.software_widened() && columns >= kConvWideColumns &&
         (isa == Isa::avx512 || isa == Isa::avx512_bf16);
}

// The attribute keys above (for check_keys) and their parsing; throws "type: ..." on a bad value.
const std::vector<std::string>& fission_attr_keys();
bool is_fission_attr(const std::string& key);
FissionSetting parse_fission_attrs(const Attrs& a, const std::string& type);

// The packed weights of one layer: `groups` blocks of `rows` rows of a row-major [groups * rows,
// K] weight, each packed into its own FissionPackedA.
class FissionWeightCache {
 public:
  // conv_c / conv_taps (a dense convolution's K = conv_c * conv_taps, else 0): native bf16 is
  // packed in channel pairs (FissionPackedA::conv_channel_pairs) when the setting is fission,
  // or with tap_kw > 0 (the kernel's width) in tap pairs (FissionPackedA::conv_tap_pairs).
  const std::vector<FissionPackedA>& get(const FissionSetting& s, const float* w, int64_t groups,
                                         int64_t rows, int64_t K, int64_t conv_c = 0,
                                         int64_t conv_taps = 0, int64_t tap_kw = 0);
  void invalidate() { packed_.clear(); key_ = nullptr; }

 private:
  std::vector<FissionPackedA> packed_;
  const float* key_ = nullptr;
  int64_t groups_ = 0, rows_ = 0, k_ = 0, conv_c_ = 0, conv_taps_ = 0, tap_kw_ = 0;
  FissionSetting setting_;
};

}  // namespace deftnn::ops
