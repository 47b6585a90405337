// deftnn: the CUDA backend (built when a CUDA compiler is found: library deftnn_cuda).
//
// The paper's own setting (§4, a GPU): every GEMM Out (M x N) = W (M x K) * In (K x N) runs as a
// tiled kernel whose operand tiles are staged in shared memory, and
//   * near-compute data fission (§4.2): the operands stay in their reduced format (IEEE half,
//     Deft-16, Deft-16Q, Deft-8 with N = 1..7 exponent bits) in device memory AND in the shared
//     memory tiles; each thread widens them in registers right before the FMA (bit layouts:
//     src/formats/widen_cuda.cuh, the device twin of include/deftnn/formats.h);
//   * the off-chip packing baseline (§5.8): reduced in device memory, widened to fp32 when a tile
//     is staged, so shared memory and the inner loop are fp32;
//   * synapse vector elimination (§4.1): the kernel that builds the input operand (im2col) reads
//     only the retained rows, so the GEMM runs on K-D with no gather pass.
// Batch-1 fully connected layers (N <= 8) run a warp-per-row kernel (bound by device memory, the
// reduced formats read fewer bytes); small grids split K across blocks.
//
// Layout contract (checked, Error otherwise): row-major operands in device memory, 16-byte
// aligned, ld a multiple of 16 elements; the weights' columns [K, ld) are zero (pack_weights()
// does this). B's rows beyond K are never read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "deftnn/formats.h"
#include "deftnn/tensor.h"

namespace deftnn {
class Model;
}

namespace deftnn::cuda {

// Whether a CUDA device is usable (false when none, or the driver refuses); never throws.
bool available();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"; throws Error when none.
std::string device_name();
void synchronize();

// Device memory, owned (cudaMalloc / cudaFree).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <typename T> T* as() const { return static_cast<T*>(p_); }
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;
  void zero();

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// The formats the CUDA kernels take: f32, half, deft16, deft16q, deft8_e1..e7 (bf16 / OCP FP8
// are CPU formats for now).
bool supported(Format f);
// Elements rounded up to the layout contract's multiple (16).
inline int64_t padded_ld(int64_t cols) { return (cols + 15) / 16 * 16; }

// A matrix in device memory: rows x cols, row-major, ld elements (of `format`) apart.
struct Operand {
  Format format = Format::f32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
};

// Weights encoded on the host (deftnn::encode, rounding r) and uploaded once: rows x cols with ld
// = padded_ld(cols) and zero padding.
struct PackedWeights {
  DeviceBuffer buffer;
  Operand operand;
};
PackedWeights pack_weights(const float* W, int64_t rows, int64_t cols, int64_t ldw, Format f,
                           Rounding r = Rounding::nearest_even);

enum class Staging : uint8_t {
  near_compute,   // fission: reduced in device and shared memory, widened in registers
  near_weights,   // fission of the weights (A); the inputs (B) widened when staged
  off_chip,       // baseline: reduced in device memory, widened to fp32 when staged
  tensor_core,    // native: 16-bit tiles fed to the tensor cores (half as fp16, Deft-16/16Q
                  // codes as bf16; Deft-8 weights widened to bf16 when staged, B Deft-16)
};
const char* staging_name(Staging s);

// C (M x N, ldc floats apart, device memory) = alpha * A * B, A = weights (M x K), B = inputs
// (K x N). Any format pair the kernels were built for (see supported_pair); f32 x f32 with
// near_compute is the dense fp32 engine. `stream`: a cudaStream_t, or null for the default.
void gemm(const Operand& A, const Operand& B, float* C, int64_t ldc, float alpha = 1.0f,
          Staging staging = Staging::near_compute, void* stream = nullptr);
// Format pairs with a kernel: (f32|half|deft16|deft16q) with the same format or f32 for B, and
// deft8_eN with f32 B. With Staging::tensor_core: half x half, (deft16|deft16q) x (deft16|deft16q),
// deft8_eN x (deft16|deft16q).
bool supported_pair(Format a, Format b);
bool tensor_core_pair(Format a, Format b);

// A convolution's input geometry for im2col (one group, NCHW images).
struct ConvGeometry {
  int64_t C = 0, H = 0, W = 0;   // channels of this group, spatial size
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
  int64_t OH() const { return (H + 2 * ph - kh) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - kw) / sw + 1; }
  int64_t K() const { return C * kh * kw; }
};
// The input operand of a convolution over `images` images x (device fp32; image i at x + i *
// image_stride, 0: C*H*W): row p of B is im2col row rows[p] (c*kh*kw + i*kw + j) for p < nrows -
// the retained synapse vectors of an eliminated layer, in the order of its truncated weights -
// or every row when rows is null (nrows must then be K). Column n = image * OH*OW + oh*OW + ow.
// Written in `format` (f32, half: nearest-even; deft16/deft16q: rounding r, truncate or
// nearest_even) at out with ld (>= images * OH * OW; the tiled GEMM wants a multiple of 16),
// padding columns zero.
void im2col(const ConvGeometry& g, int64_t images, const float* x, int64_t image_stride,
            const int32_t* rows, int64_t nrows, Format format, Rounding r, void* out, int64_t ld,
            void* stream = nullptr);

// A whole network on the GPU, built once for a batch size from a Model (inference: dropout is the
// identity; conv, fc, relu, max/avg pooling, LRN, softmax, scalar eltwise_const, add, concat,
// flatten). ReLU after a conv / fc runs in its GEMM's epilogue; an eliminated layer (attribute
// `retained`) runs its truncated weights on the retained rows (read by im2col); conv and fc
// weights are packed in the options' formats. A run is one CUDA graph launch. Throws Error naming
// a layer the GPU cannot run.
struct SessionOptions {
  Format conv_format = Format::f32;   // weights; activations in the same 16-bit format, else fp32
  Format fc_format = Format::f32;
  Staging staging = Staging::near_weights;
  Rounding rounding = Rounding::nearest_even;              // weights
  Rounding activation_rounding = Rounding::nearest_even;   // deft16 / deft16q activations
};
class Session {
 public:
  Session(const Model& model, int64_t batch, const SessionOptions& options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  const Shape& input_shape() const;
  const Shape& output_shape() const;
  const std::string& summary() const;
  // Uploads the input, runs the graph, returns the output (host).
  Tensor run(const Tensor& input);
  // Median time of a forward pass (graph launch, device only), milliseconds.
  double time_ms(int reps);
  // Median time per step (launched one by one; the sum exceeds time_ms by the launch gaps).
  std::vector<std::pair<std::string, double>> layer_ms(int reps);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Wall time of what `fn` launches on `stream` (a cudaStream_t, null: the default stream): the
// median of `reps` runs timed by CUDA events after `warmup` untimed ones, in milliseconds; with
// flush_l2_first, the L2 cache is evicted before each timed run (outside the timing).
double time_ms(const std::function<void()>& fn, int warmup, int reps, bool flush_l2_first = false,
               void* stream = nullptr);
// Evicts the L2 cache (writes a buffer larger than it, on `stream`), for cold-cache timings.
void flush_l2(void* stream = nullptr);
int64_t l2_bytes();

}  // namespace deftnn::cuda
