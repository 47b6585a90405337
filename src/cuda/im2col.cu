// deftnn CUDA backend: the input operand of a convolution (im2col), with synapse vector
// elimination's run-time reorganisation inside it (paper §4.1.1: the GEMM sees only the K-D
// retained rows, read in the order of the truncated weights; no gather pass), written directly in
// the GEMM's operand format (fission: activations are encoded where they are packed).
#include "cuda/check.cuh"
#include "deftnn/cuda.h"
#include "formats/widen_cuda.cuh"

namespace deftnn::cuda {
namespace {

struct Im2colArgs {
  const float* x;
  const int32_t* rows;
  int64_t image_stride, ld;
  int C, H, W, kh, kw, sh, sw, ph, pw, OH, OW, images, nrows;
};

// One thread per output element: row p (blockIdx.y), column n; columns past images*OH*OW (up to
// ld) are written as zero.
template <typename Code, typename Encode>
__global__ void im2col_kernel(Im2colArgs a, Code* out, Encode enc) {
  const int p = blockIdx.y;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= a.ld) return;
  const int ohw = a.OH * a.OW;
  float v = 0.0f;
  if (n < static_cast<int64_t>(a.images) * ohw) {
    const int r = a.rows ? a.rows[p] : p;
    const int c = r / (a.kh * a.kw), rem = r % (a.kh * a.kw), i = rem / a.kw, j = rem % a.kw;
    const int img = static_cast<int>(n / ohw), pos = static_cast<int>(n % ohw);
    const int ih = (pos / a.OW) * a.sh - a.ph + i, iw = (pos % a.OW) * a.sw - a.pw + j;
    if (ih >= 0 && ih < a.H && iw >= 0 && iw < a.W)
      v = __ldg(a.x + img * a.image_stride + (static_cast<int64_t>(c) * a.H + ih) * a.W + iw);
  }
  out[static_cast<int64_t>(p) * a.ld + n] = enc(v);
}

struct EncF32 { __device__ float operator()(float v) const { return v; } };
struct EncHalf { __device__ uint16_t operator()(float v) const { return cuda_fmt::half_rne(v); } };
struct EncD16T { __device__ uint16_t operator()(float v) const { return cuda_fmt::deft16_trunc(v); } };
struct EncD16N { __device__ uint16_t operator()(float v) const { return cuda_fmt::deft16_rne(v); } };

}  // namespace

void im2col(const ConvGeometry& g, int64_t images, const float* x, int64_t image_stride,
            const int32_t* rows, int64_t nrows, Format format, Rounding r, void* out, int64_t ld,
            void* stream) {
  if (g.C <= 0 || g.H <= 0 || g.W <= 0 || g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0 ||
      g.ph < 0 || g.pw < 0 || g.OH() <= 0 || g.OW() <= 0 || images <= 0)
    throw Error("CUDA im2col: bad convolution geometry");
  if (!x || !out) throw Error("CUDA im2col: null input or output");
  if (rows ? (nrows <= 0 || nrows > g.K()) : nrows != g.K())
    throw Error("CUDA im2col: " + std::to_string(nrows) + " rows requested of a K = " +
                std::to_string(g.K()) + " column matrix");
  const int64_t cols = images * g.OH() * g.OW();
  if (ld < cols)
    throw Error("CUDA im2col: ld " + std::to_string(ld) + " must be >= " + std::to_string(cols) +
                " columns");
  if (nrows > 65535 || cols > (int64_t{1} << 31) || g.C * g.H * g.W > (int64_t{1} << 31))
    throw Error("CUDA im2col: operand too large");
  Im2colArgs a{x, rows, image_stride ? image_stride : g.C * g.H * g.W, ld,
               static_cast<int>(g.C), static_cast<int>(g.H), static_cast<int>(g.W),
               static_cast<int>(g.kh), static_cast<int>(g.kw), static_cast<int>(g.sh),
               static_cast<int>(g.sw), static_cast<int>(g.ph), static_cast<int>(g.pw),
               static_cast<int>(g.OH()), static_cast<int>(g.OW()), static_cast<int>(images),
               static_cast<int>(nrows)};
  const dim3 grid(static_cast<unsigned>((ld + 255) / 256), static_cast<unsigned>(nrows));
  const cudaStream_t st = as_stream(stream);
  switch (format) {
    case Format::f32: im2col_kernel<<<grid, 256, 0, st>>>(a, static_cast<float*>(out), EncF32{}); break;
    case Format::half:
      if (r != Rounding::nearest_even)
        throw Error("CUDA im2col: half activations are encoded with nearest-even rounding only");
      im2col_kernel<<<grid, 256, 0, st>>>(a, static_cast<uint16_t*>(out), EncHalf{});
      break;
    case Format::deft16: case Format::deft16q:
      if (r == Rounding::truncate)
        im2col_kernel<<<grid, 256, 0, st>>>(a, static_cast<uint16_t*>(out), EncD16T{});
      else if (r == Rounding::nearest_even)
        im2col_kernel<<<grid, 256, 0, st>>>(a, static_cast<uint16_t*>(out), EncD16N{});
      else
        throw Error("CUDA im2col: stochastic rounding is not implemented on the GPU");
      break;
    default:
      throw Error(std::string("CUDA im2col: activations in format ") + format_name(format) +
                  " have no kernel (f32, half, deft16, deft16q)");
  }
  DEFTNN_CUDA_LAUNCHED("im2col");
}

}  // namespace deftnn::cuda
