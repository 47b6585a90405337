// deftnn CUDA backend: device discovery, device memory, weight packing and timing.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cuda/check.cuh"
#include "deftnn/cuda.h"

namespace deftnn::cuda {

bool available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();   // clear the sticky "no driver" error
    return false;
  }
  return n > 0;
}

std::string device_name() {
  if (!available()) throw Error("CUDA: no usable CUDA device");
  cudaDeviceProp p{};
  DEFTNN_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs)";
}

void synchronize() { DEFTNN_CUDA_CHECK(cudaDeviceSynchronize()); }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes > 0) DEFTNN_CUDA_CHECK(cudaMalloc(&p_, bytes));
}
DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
  o.p_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  if (offset + bytes > bytes_) throw Error("CUDA: upload past the end of a device buffer");
  DEFTNN_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p_) + offset, host, bytes, cudaMemcpyHostToDevice));
}
void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  if (offset + bytes > bytes_) throw Error("CUDA: download past the end of a device buffer");
  DEFTNN_CUDA_CHECK(cudaMemcpy(host, static_cast<const char*>(p_) + offset, bytes, cudaMemcpyDeviceToHost));
}
void DeviceBuffer::zero() {
  if (bytes_) DEFTNN_CUDA_CHECK(cudaMemset(p_, 0, bytes_));
}

bool supported(Format f) {
  switch (f) {
    case Format::f32: case Format::half: case Format::deft16: case Format::deft16q:
    case Format::deft8_e1: case Format::deft8_e2: case Format::deft8_e3: case Format::deft8_e4:
    case Format::deft8_e5: case Format::deft8_e6: case Format::deft8_e7:
      return true;
    default:
      return false;
  }
}

PackedWeights pack_weights(const float* W, int64_t rows, int64_t cols, int64_t ldw, Format f,
                           Rounding r) {
  if (!supported(f))
    throw Error(std::string("CUDA: no kernel takes weights in format ") + format_name(f));
  if (rows <= 0 || cols <= 0 || ldw < cols)
    throw Error("CUDA: pack_weights: bad shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                " (ld " + std::to_string(ldw) + ")");
  const int64_t ld = padded_ld(cols);
  // Encode row by row on the host (the library's encoders: same bits as the CPU engine), each
  // row padded with zeros to ld (deft16q pairs along the row: ld is even).
  std::vector<float> row(static_cast<size_t>(ld), 0.0f);
  const int64_t row_bytes = encoded_bytes(f, ld);
  std::vector<unsigned char> host(static_cast<size_t>(row_bytes * rows));
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(row.data(), W + i * ldw, static_cast<size_t>(cols) * sizeof(float));
    encode(f, r, row.data(), host.data() + i * row_bytes, ld, /*seed=*/static_cast<uint64_t>(i));
  }
  PackedWeights p;
  p.buffer = DeviceBuffer(host.size());
  p.buffer.upload(host.data(), host.size());
  p.operand = Operand{f, p.buffer.data(), rows, cols, ld};
  return p;
}

const char* staging_name(Staging s) {
  switch (s) {
    case Staging::near_compute: return "near";
    case Staging::near_weights: return "nearw";
    case Staging::tensor_core: return "tc";
    default: return "offchip";
  }
}

double time_ms(const std::function<void()>& fn, int warmup, int reps, bool flush_l2_first,
               void* stream) {
  const cudaStream_t st = as_stream(stream);
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  DEFTNN_CUDA_CHECK(cudaEventCreate(&a));
  DEFTNN_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    if (flush_l2_first) flush_l2(stream);
    DEFTNN_CUDA_CHECK(cudaEventRecord(a, st));
    fn();
    DEFTNN_CUDA_CHECK(cudaEventRecord(b, st));
    DEFTNN_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    DEFTNN_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int64_t l2_bytes() {
  cudaDeviceProp p{};
  DEFTNN_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return p.l2CacheSize;
}

void flush_l2(void* stream) {
  static DeviceBuffer scratch;
  const size_t need = static_cast<size_t>(l2_bytes()) * 2;
  if (scratch.bytes() < need) scratch = DeviceBuffer(need);
  DEFTNN_CUDA_CHECK(cudaMemsetAsync(scratch.data(), 0, need, as_stream(stream)));
}

}  // namespace deftnn::cuda
