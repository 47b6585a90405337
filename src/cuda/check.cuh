// deftnn CUDA backend: error checking shared by src/cuda/*.cu.
#pragma once
#include <cuda_runtime.h>
#include <string>

#include "deftnn/error.h"

namespace deftnn::cuda {

// Throws Error naming the call and CUDA's own message.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
#define DEFTNN_CUDA_CHECK(call) ::deftnn::cuda::check((call), #call)
// After a kernel launch: a bad configuration shows here, not at the next call.
#define DEFTNN_CUDA_LAUNCHED(what) ::deftnn::cuda::check(cudaGetLastError(), what)

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace deftnn::cuda
