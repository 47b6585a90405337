// A direct 7-loop convolution, the reference the conv tests (test_ops.cpp, sparse inference in
// test_sparse.cpp) check the layer's kernels against.
#pragma once
#include <cstdint>
#include <vector>

#include "deftnn/layer.h"
#include "deftnn/tensor.h"

namespace deftnn::test {

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, G;
  bool bias = true;
};

inline Attrs conv_attrs(const ConvCase& c) {
  Attrs a;
  a.set("out_channels", c.O).set("kernel", std::vector<int64_t>{c.kh, c.kw});
  a.set("stride", std::vector<int64_t>{c.sh, c.sw});
  if (c.pt == c.pb && c.pl == c.pr)
    a.set("pad", std::vector<int64_t>{c.pt, c.pl});
  else
    a.set("pads", std::vector<int64_t>{c.pt, c.pl, c.pb, c.pr});
  a.set("dilation", std::vector<int64_t>{c.dh, c.dw}).set("groups", c.G).set("bias", c.bias ? 1 : 0);
  return a;
}

inline Tensor conv_ref(const ConvCase& c, const Tensor& x, const Tensor& w, const float* b) {
  const int64_t OH = (c.H + c.pt + c.pb - (c.dh * (c.kh - 1) + 1)) / c.sh + 1;
  const int64_t OW = (c.W + c.pl + c.pr - (c.dw * (c.kw - 1) + 1)) / c.sw + 1;
  const int64_t Cg = c.C / c.G, Og = c.O / c.G;
  Tensor y({c.N, c.O, OH, OW});
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = b ? b[o] : 0.0;
          const int64_t g = o / Og;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < c.kh; ++i)
              for (int64_t j = 0; j < c.kw; ++j) {
                const int64_t ih = oh * c.sh - c.pt + i * c.dh, iw = ow * c.sw - c.pl + j * c.dw;
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                s += static_cast<double>(x[((n * c.C + g * Cg + ci) * c.H + ih) * c.W + iw]) *
                     w[((o * Cg + ci) * c.kh + i) * c.kw + j];
              }
          y[((n * c.O + o) * OH + oh) * OW + ow] = static_cast<float>(s);
        }
  return y;
}

}  // namespace deftnn::test
