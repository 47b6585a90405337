// deftnn Winograd convolution F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016): a dense fp32 3x3 stride-1 convolution as 16 GEMMs of a quarter of
// the depth-times-pixels work, 2.25x fewer multiplies than the direct kernel. Used at inference
// by Conv for frozen dense fp32 layers (the weights are transformed once, like packed weights);
// never with synapse elimination. Software-widened formats run it on their weights widened
// once (ops/conv.cpp); native bf16 runs its own variant (below).
//
// With U = G g G^T (4 x 4 per output channel o and input channel c), V = B^T d B (4 x 4 per
// input tile d of 4 x 4 pixels, tiles 2 pixels apart), the 16 products M_xi = U_xi * V_xi (GEMMs
// [O x C] * [C x tiles], xi = 0..15) give each 2 x 2 output tile Y = A^T M A, with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// The transforms only add, subtract and halve, so the result differs from the direct sum by a
// few ulps of the operands' magnitudes (the tests bound it against the naive conv).
//
// Work goes in blocks of tiles: a thread transforms a block's input straight into the packed B
// panels the sgemm micro-kernel reads (ukernel.h; no separate packing pass), runs the 16 GEMMs
// one strip of MR output channels at a time into a small buffer, and transforms that strip's
// output at once, adding bias and residual and applying ReLU as it stores (fused, as the direct
// tiles do). A block's transformed input (~256 KiB) and a strip's GEMM output (~96 KiB) stay
// in L2; nothing of the 16 intermediate matrices goes to memory.
//
// bf16 variant (avx512_bf16 only, WinogradWeights(..., bf16 = true)): U_xi is rounded to bf16
// (nearest even, from the fp32 weights) and stored in K pairs (channels 2kp and 2kp + 1 in one
// 32-bit word); the input transform writes V_xi as K-pair words too, rounded as vcvtne2ps2bf16
// rounds (nearest even, DAZ); the 16 GEMMs run vdpbf16ps (twice the fp32 FMA's products per
// instruction) with fp32 accumulation; the output transform is the fp32 one. So the operands of
// the multiplies are bf16, as in the native bf16 fission kernels, but they are the transformed
// values, sums of up to 16 inputs or 9 weights: on a 64-channel conv the RMS error against fp32
// is 1.9x the direct bf16 kernels' (test_fission_layers.cpp); end to end on VGG-11 (random
// weights, 8 images) 0.74% relative L2 against 0.68%, top-1 unchanged. WinogradPolicy::off
// (--winograd off) keeps the direct kernels.
#pragma once
#include <cstdint>
#include <vector>

#include "deftnn/gemm.h"
#include "gemm/sbgemm_pairs.h"

namespace deftnn::gemm {

// The transformed, packed weights of one 3x3 convolution: for each xi, U_xi [O x C] packed as
// the micro-kernel's A strips (pack_a with the ISA's MR), or for bf16 as K-pair words.
class WinogradWeights {
 public:
  WinogradWeights() = default;
  // w: [O, C, 3, 3] row-major fp32. bf16: the K-pair bf16 layout (needs isa avx512_bf16).
  WinogradWeights(Isa isa, const float* w, int64_t O, int64_t C, bool bf16 = false);
  WinogradWeights(WinogradWeights&&) noexcept;
  WinogradWeights& operator=(WinogradWeights&&) noexcept;
  WinogradWeights(const WinogradWeights&) = delete;
  WinogradWeights& operator=(const WinogradWeights&) = delete;
  ~WinogradWeights();

  bool empty() const { return data_ == nullptr && pairs_.empty(); }
  Isa isa() const { return isa_; }
  int64_t out_channels() const { return O_; }
  int64_t in_channels() const { return C_; }
  int mr() const { return mr_; }
  int64_t strips() const { return (O_ + mr_ - 1) / mr_; }
  // Strip s of U_xi: MR x C, element (i, c) at [c * MR + i].
  const float* strip(int xi, int64_t s) const { return data_ + xi * xi_stride_ + s * mr_ * C_; }
  bool bf16() const { return !pairs_.empty(); }
  int64_t depth_pairs() const { return (C_ + 1) / 2; }
  // bf16: strip s of U_xi as K-pair words (sbgemm_pairs.h's 12-row strips).
  const uint32_t* strip_pairs(int xi, int64_t s) const { return pairs_[xi].strip(s); }

 private:
  Isa isa_ = Isa::portable;
  int64_t O_ = 0, C_ = 0, xi_stride_ = 0;
  int mr_ = 0;
  float* data_ = nullptr;              // fp32: the 16 packed U_xi
  std::vector<Bf16RowStrips> pairs_;   // bf16: the 16 U_xi in K pairs
};

// One image layout of a Winograd conv call.
struct WinogradShape {
  int64_t images = 1;
  int64_t H = 0, W = 0;            // input plane
  int64_t pad_h = 0, pad_w = 0;    // top / left zero padding (bottom / right follow from OH, OW)
  int64_t OH = 0, OW = 0;          // output plane (OH <= H + 2 pad_h - 2, same for OW)
  int64_t x_image_stride = 0;      // floats between images of x (>= C * H * W)
  int64_t y_image_stride = 0;      // floats between images of y (>= O * OH * OW)
};

// The conv output pass, applied to every output element as it is stored: + bias[o] (non-null),
// + res (non-null; laid out like y but res_image_stride floats between images), then ReLU as
// v > 0 ? v : 0 * v (relu).
struct WinogradEpilogue {
  const float* bias = nullptr;
  const float* res = nullptr;
  int64_t res_image_stride = 0;
  bool relu = false;
};

// y[n, o, i, j] = sum_{c, u, v} w[o, c, u, v] * x[n, c, i + u - pad_h, j + v - pad_w] (zeros
// outside the plane), then the epilogue; runs on the calling thread's OpenMP team.
void winograd_conv3x3(const WinogradWeights& w, const WinogradShape& s, const float* x, float* y,
                      const WinogradEpilogue& epi);

// Whether the ISA has vectorised transforms (others run the portable ones: correct, slower).
bool winograd_fast(Isa isa);
// Whether WinogradPolicy::automatic runs a conv of C input and O output channels with this many
// 2 x 2 output tiles (all images) as Winograd (bf16: the bf16 variant against the native bf16
// direct kernels): measured where it pays (winograd.cpp).
bool winograd_pays(Isa isa, int64_t C, int64_t O, int64_t tiles, bool bf16 = false);

// The transforms work on groups of up to 16 consecutive tiles (tile t of the call: image
// t / (th * tw), tile row (t / tw) % th, column t % tw; th x tw tiles of 2 x 2 output pixels per
// image), one tile per vector lane. A group may run over several tile rows and images: it is cut
// into parts, each lanes [a, b) holding tiles tx0 .. tx0 + b - a - 1 of one tile row.
struct WinoPart {
  int64_t n, ty, tx0;
  int a, b;
};
// Input: channel c of lane l (tile j + l of the block) goes to the packed panels at
// v[xi * xi_stride + ((j + l) / nr) * C * nr + c * nr + (j + l) % nr] (the AVX-512 transform
// needs j % nr + len <= nr). The bf16 transform (wino_in__avx512bf16) writes 32-bit K-pair words
// instead, v read as uint32_t: channels 2kp, 2kp + 1 of lane l at word
// xi * xi_stride + ((j + l) / nr) * KP * nr + kp * nr + (j + l) % nr, KP = ceil(C / 2).
struct WinoInSeg {
  const float* x;           // image 0; image n at x + n * x_image_stride, channel c planes H * W
  int64_t x_image_stride, C, H, W, pad_h, pad_w;
  const WinoPart* parts;
  int nparts, len;
  float* v;                 // the block's panels
  int64_t xi_stride;
  int nr;
  int64_t j;
};
// Output: rows i < m of a strip, m_xi(i, l) at mbuf[(xi * mr + i) * ldm + j + l]; row i of the
// strip is channel plane y + n * y_image_stride + i * OH * OW of lane l's image n (the strip's
// first channel already applied to y, res and bias), likewise res (null: none).
struct WinoOutSeg {
  const float* mbuf;
  int64_t ldm;
  int mr, m;
  int64_t j;
  int len;
  const WinoPart* parts;
  int nparts;
  int64_t OH, OW;
  float* y;
  int64_t y_image_stride;
  const float* res;
  int64_t res_image_stride;
  const float* bias;        // null: none; else the bias of the strip's row 0
  bool relu;
};
void wino_in__portable(const WinoInSeg& s);
void wino_out__portable(const WinoOutSeg& s);
void wino_in__avx512(const WinoInSeg& s);
void wino_out__avx512(const WinoOutSeg& s);
void wino_in__avx512bf16(const WinoInSeg& s);   // (its GEMMs: sbgemm_pairs.h)

}  // namespace deftnn::gemm
