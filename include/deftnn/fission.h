// deftnn: near-compute data fission GEMM (paper §4.2; issue 4). Layer weights A (M x K) are
// packed ONCE into a reduced format (half, Deft-16, Deft-16Q, Deft-8 with N exponent bits, bf16,
// or fp32 for reference); at run time the activations B (K x N) are packed per call and the
// micro-kernel widens the reduced A values in registers right before the FMA, so the packed
// panels in L1/L2 (and the weight stream from DRAM at batch 1) stay reduced.
//
// Tile orientation. The reduced operand is A, so the micro-tile is transposed with respect to the
// fp32 kernels: it vectorises over M (a packed strip holds MR rows of A per k, contiguous) and
// broadcasts B. Each A vector is loaded and widened ONCE per k and reused across all NR columns
// of B in the tile (the FBGEMM rule "widen once, reuse across the tile", applied to A because A
// is the reduced operand); B broadcasts are fp32 embedded-broadcast memory operands of the FMA.
//   AVX-512: MR = 32 (two zmm per k), NR = 12  (24 accumulators).
//   AVX2:    MR = 16 (two ymm per k), NR = 6   (12 accumulators).
//   portable: MR = 8, NR = 4; no register fission: each strip is decoded into an fp32 buffer.
// Widening per k (one strip column):
//   half      vcvtph2ps (F16C).
//   deft16    one load of MR codes; even rows = word << 16, odd rows = word & 0xFFFF0000.
//   deft16q   the same words; odd rows = the word itself (the saved AND of Fig. 7e; the even
//             row's bits spill into the odd row's low mantissa, see formats.h).
//   deft8_eN  sign-extend bytes, shift left 16+N, AND (sign | exponent | mantissa), multiply by
//             2^(127-bias): exactly decode() including zero and subnormals. The multiply is
//             moved to B when every |b| < 2^(1+bias) (checked once per call): B is prescaled by
//             2^(127-bias) while packed (or while the image is copied, fission_conv), and the
//             kernel FMAs the raw bits - bit for bit the same result (power-of-two scale, exact
//             products); otherwise the multiplying kernel runs.
//   deft8_eN in bf16_dot mode (the paper's Deft-8H on this CPU's bf16 unit), on avx512_bf16 with
//             AVX512_VBMI: A packed in K pairs per row like native bf16, 64 codes per k pair of a
//             strip; two vpermi2b lookups (128-entry tables of the low and high byte of the bf16
//             of each positive code; every Deft-8 value is exactly a normal bf16), the sign bit
//             ORed in, two byte interleaves: 32 bf16 pairs in 5 instructions, then vdpbf16ps
//             (32 products each). B rounded to bf16 as for native bf16. The fp32 widening costs
//             3 instructions per 16 weights plus the FMA: fc6 at batch 1 ran at half the DRAM
//             bandwidth. Elsewhere (no VBMI or no bf16): the fp32 kernels with B rounded to bf16,
//             the same products.
//   bf16      on avx512_bf16: native vdpbf16ps, A packed in K pairs per row, B rounded to bf16
//             (nearest even, DAZ: the instruction's semantics) and packed in K pairs per call.
//             On ISAs without it: A widened by shift like deft16 and B rounded to bf16 too, so
//             every path computes the same products (fp32 accumulation).
// The strip layout for every format except native bf16 is element (i, k) at code [k * MR + i]
// (so a Deft-16Q word pairs rows 2d and 2d+1 of the same k). Native bf16: (i, k) at
// [((k / 2) * MR + i) * 2 + k % 2], an odd K padded with a zero column.
//
// Off-chip data packing baseline (§5.8, Fig. 18): the same compressed strips, but each strip is
// widened to fp32 into a per-thread buffer before the fp32 micro-kernel runs over it: weights are
// compressed in memory, panels are fp32. B stays fp32 in this mode (also for bf16).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "deftnn/formats.h"
#include "deftnn/gemm.h"

namespace deftnn {

enum class FissionMode : uint8_t {
  fission,    // widen in registers next to the FMA
  offchip,    // widen each strip to fp32 when it is "packed", then the fp32 kernel
  bf16_dot,   // Deft-8 widened in registers to bf16 (exact) and multiplied by vdpbf16ps with the
              // activations rounded to bf16: Deft-8 on the bf16 unit (see below); other formats
              // run as in fission mode
};

// Whether the fission GEMM supports a format: f32, half, deft16, deft16q, bf16, deft8_e1..e7.
bool fission_supports(Format f);

// op(A) (M x K) encoded once in `format` with `rounding`, in the strip layout of the ISA active at
// construction (stochastic rounding draws stochastic_bits(seed, position in the packed array)).
// Immutable; copies share storage.
class FissionPackedA {
 public:
  FissionPackedA() = default;
  // mode: the kernels the strips are laid out for (bf16_dot: Deft-8 in K pairs where the CPU
  // runs it natively; every other mode and format packs as fission).
  FissionPackedA(Format format, Rounding rounding, bool trans_a, int64_t M, int64_t K,
                 const float* A, int64_t lda, uint64_t seed = 0,
                 FissionMode mode = FissionMode::fission);
  Format format() const { return format_; }
  Rounding rounding() const { return rounding_; }
  Isa isa() const { return isa_; }
  int64_t rows() const { return m_; }
  int64_t depth() const { return k_; }
  bool empty() const { return data_ == nullptr; }
  int mr() const { return mr_; }
  bool native_bf16() const { return pairs_; }   // K-pair layout for vdpbf16ps (bf16, Deft-8)
  int64_t strips() const { return strips_; }
  int64_t strip_bytes() const { return strip_bytes_; }   // 64-byte multiple
  int64_t bytes() const { return strips_ * strip_bytes_; }   // storage of the packed weights
  const uint8_t* strip(int64_t s) const { return data_.get() + s * strip_bytes_; }
  // The M x K fp32 matrix the kernels multiply by (decoded, Deft-16Q spill included), row-major.
  std::vector<float> widened() const;

  // Convolution weights W (M x C * taps, row-major, columns in the natural (c, tap) order of the
  // column matrix) packed for fission_conv's channel-pair path where it applies - native bf16 on
  // an avx512_bf16 CPU: K reordered to (cp, tap, c % 2), C padded to even with zero weights, so
  // that each K pair is channels 2cp and 2cp + 1 at one tap and fission_conv's tile reads B's
  // K-pair words from a channel-pair copy of the image instead of packed B panels. Otherwise the
  // ordinary packing of W (channel_pair_taps() == 0). depth() is the reordered K (2 * ceil(C / 2)
  // * taps) and widened() is in that order.
  // (mode: as for the constructor, for the ordinary packing: Deft-8 in bf16_dot mode is packed
  // in K pairs of the natural order and runs on K-pair panels.)
  static FissionPackedA conv_channel_pairs(Format format, Rounding rounding, int64_t M, int64_t C,
                                           int64_t taps, const float* W, uint64_t seed = 0,
                                           FissionMode mode = FissionMode::fission);
  // The same for a small odd C (an image's first layer: C = 1 or 3) in tap pairs instead: K
  // reordered to (c, i, jp, j % 2) for tap (i, j = 2jp + j % 2), kw padded to even with zero
  // weights, so that each K pair is two horizontally adjacent taps of one channel and the tile
  // reads B's K-pair words from a copy of the image that pairs each element with its right
  // neighbour. Dilation 1 only (fission_conv checks). CaffeNet's conv1 (C = 3, 11x11): K 363 ->
  // 396, against 484 in channel pairs. depth() is 2 * C * kh * ceil(kw / 2).
  static FissionPackedA conv_tap_pairs(Format format, Rounding rounding, int64_t M, int64_t C,
                                       int64_t kh, int64_t kw, const float* W, uint64_t seed = 0,
                                       FissionMode mode = FissionMode::fission);
  int64_t channel_pair_taps() const { return pair_taps_; }   // 0: natural K order
  int64_t channel_pair_c() const { return pair_c_; }         // C before padding
  int64_t tap_pair_kw() const { return pair_kw_; }           // tap pairs: kw; channel pairs: 0

 private:
  Format format_ = Format::f32;
  Rounding rounding_ = Rounding::nearest_even;
  Isa isa_ = Isa::portable;
  int64_t m_ = 0, k_ = 0, strips_ = 0, strip_bytes_ = 0;
  int mr_ = 8;
  bool pairs_ = false;
  int64_t pair_taps_ = 0, pair_c_ = 0, pair_kw_ = 0;
  std::shared_ptr<uint8_t> data_;
};

// C[M x N] = alpha * widen(A) * op(B) + beta * C, C row-major (ldc >= N); op(B) = B (K x N,
// ldb >= N) or B^T (B stored N x K, ldb >= K). For fc, Y^T = W X^T is trans_b = true with B = X.
// beta == 0: C is write-only. Runs a.isa()'s kernels; OpenMP over omp_get_max_threads().
// N == 1 and small N are the GEMV path (same kernels, one narrow B panel, strips streamed by all
// threads, dynamic schedule). Native bf16 rounds B to bf16 (nearest even) on every call.
// bkidx (synapse vector elimination, optional): row k of op(B) is row bkidx[k] of the stored
// op(B) (as sgemm_gather): an fc's retained input columns are read by the packing step, X' is
// never built. (Deft-8's prescale test then covers B's rows/columns up to the largest index.)
void fission_gemm(const FissionPackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                  int64_t ldb, float beta, float* C, int64_t ldc,
                  FissionMode mode = FissionMode::fission, const int64_t* bkidx = nullptr);

// A convolution as a fission GEMM whose B operand is never materialised: C[M x N] = alpha *
// widen(A) * B + beta * C with B[K x N] the column matrix (im2col) of `images` images side by
// side, built straight into the packed B panels in the format the kernel reads (native bf16:
// K-pair words, rounded to nearest even with DAZ like vdpbf16ps; else fp32). Row k of B is
// (c, i, j) = (k / (kh * kw), k / kw % kh, k % kw), column n is image n / (OH * OW) at output
// position n % (OH * OW); x[c, ih, iw] of image t is x[t * image_stride + (c * H + ih) * W + iw],
// zero outside [0, H) x [0, W). Once per call the images are copied into a zero-padded copy split
// by the column stride into sw phases (sw = 1: padding only), so that every row segment of every
// panel is one contiguous load: no im2col matrix (conv1: 4.4 MB) and no strided reads.
// Where the ISA has a direct tile (AVX-512; fp32 B, i.e. every format but bf16, not off-chip
// unless A is fp32) there are no B panels at all: the tile reads B from the copy, output row
// by output row in chunks of at most 12 columns (rows under 32 wide, fp32 or channel pairs:
// chunks of 12 running on into the next row; fp32 with K <= 96 or M <= 16 and column stride 1
// or 2: 32 columns in the pixel-vector tile), each thread copying the image rows of the output rows it
// computes; a 1x1 stride-1 conv reads the images in place. Native bf16 with channel-pair weights
// (FissionPackedA::conv_channel_pairs) reads a K-pair-word copy of the image the same way.
// Requires a.depth() == C * kh * kw; N = images * OH * OW; ldc >= N.
struct FissionConvShape {
  int64_t C = 0, H = 0, W = 0;     // input channels (of this group) and spatial size
  int64_t kh = 1, kw = 1;          // kernel
  int64_t sh = 1, sw = 1;          // stride
  int64_t pt = 0, pl = 0;          // top / left padding (bottom / right follow from OH, OW)
  int64_t dh = 1, dw = 1;          // dilation
  int64_t OH = 0, OW = 0;          // output size
  int64_t images = 1;              // images side by side in B (and C)
  int64_t image_stride = 0;        // floats between consecutive images' x (>= C * H * W)
  // Where the images' outputs go. 0: side by side in C's columns (image t's output pixel p is
  // column t * OH * OW + p; ldc >= images * OH * OW). Else image t's M x (OH * OW) output
  // starts at C + t * out_image_stride, rows ldc >= OH * OW apart (an NCHW batch written in
  // place: no side-by-side buffer copied out afterwards); it must not overlap the next image's
  // (out_image_stride >= (M - 1) * ldc + OH * OW).
  int64_t out_image_stride = 0;
  // A hint: the caller's output (its whole batch) is larger than the caches, so the direct
  // tiles fetch their output lines as they start (the stores would wait on DRAM). Results are
  // the same either way.
  bool out_streams = false;
};
// An output pass fused into the GEMM (optional): fn(ctx, i0, j0, m, n, c, ldc) is called once per
// finished C tile (rows [i0, i0 + m), columns [j0, j0 + n), c = &C[i0 * ldc + j0]) right after the
// kernel wrote it, while the tile is in L1, by the thread that computed it. The layers use it
// for bias + residual add + ReLU (conv inference), saving separate passes over the output.
// Or, with fn null, the conv output pass done by the tile kernel itself on the rows it stores
// (in registers on AVX-512, no re-read of C): row i of C gets + bias[i] (bias non-null), then
// + res[i * ldr + j] (res non-null: M rows x N, ldr apart), then ReLU (v > 0 ? v : 0 * v), the
// float operations of separate bias, add and relu passes.
struct TileEpilogue {
  void (*fn)(const void* ctx, int64_t i0, int64_t j0, int m, int n, float* c, int64_t ldc) = nullptr;
  const void* ctx = nullptr;
  const float* bias = nullptr;
  const float* res = nullptr;
  int64_t ldr = 0;
  // With FissionConvShape::out_image_stride: image t's res rows start at res + t *
  // res_image_stride (ldr apart), column p of the image at + p; fn gets j0 = t * OH * OW + p and
  // c = that image's output (its rows ldc apart).
  int64_t res_image_stride = 0;
  bool relu = false;
  bool active() const { return fn || bias || res || relu; }
};

// kept_rows (synapse vector elimination, optional): B holds only the column-matrix rows kept_rows[0..K')
// of the full C * kh * kw, in that order, and a.depth() == K'; the retained rows are read from the
// image while the panels are built (the paper's reorganisation inside the operand builder).
void fission_conv(const FissionPackedA& a, const FissionConvShape& g, const float* x, float alpha,
                  float beta, float* C, int64_t ldc, FissionMode mode = FissionMode::fission,
                  const std::vector<int64_t>* kept_rows = nullptr,
                  const TileEpilogue* epilogue = nullptr);

// fission_conv packs B panels from the image even where the ISA has a tile that reads B from
// the image directly (AVX-512: fp32 B, not off-chip). For tests and before/after benchmarks;
// not thread-safe against running convolutions.
void set_fission_conv_panels(bool force);

// The GEMV tiles (fc at batch 1, a reduced weight format) prefetch the weight stream 8 KiB
// ahead: Zen 5's hardware prefetchers alone leave a Deft-8 stream at ~85% of DRAM bandwidth.
// On by default; off for before/after benchmarks (bench_fission). Not thread-safe against
// running GEMMs.
void set_fission_gemv_prefetch(bool on);

// Name of the tile kernel fission_conv runs for a packed A on a geometry (for logs and
// benchmarks): a direct tile, or fission_kernel_name's with B panels.
const char* fission_conv_kernel_name(const FissionPackedA& a, const FissionConvShape& g,
                                     FissionMode mode = FissionMode::fission);

// Name of the kernel family a packed A runs (for logs and benchmarks).
const char* fission_kernel_name(const FissionPackedA& a, FissionMode mode = FissionMode::fission);

}  // namespace deftnn
