// `deftnn bench MODEL --device cuda`: a model on the CUDA backend (cuda::Session), per step and
// end to end, checked against the CPU engine's output. Compiled in every build; without the CUDA
// backend (DEFTNN_HAVE_CUDA unset) it says so.
#include <algorithm>
#include <chrono>
#include <memory>

#include "cli/common.h"
#include "deftnn/io.h"
#ifdef DEFTNN_HAVE_CUDA
#include "deftnn/cuda.h"
#endif

namespace deftnn::cli {

#ifdef DEFTNN_HAVE_CUDA
namespace {
cuda::SessionOptions session_options(const CudaBenchArgs& a) {
  cuda::SessionOptions o;
  o.conv_format = format_from_name(a.conv_format);
  o.fc_format = format_from_name(a.fc_format);
  if (a.staging == "near") o.staging = cuda::Staging::near_compute;
  else if (a.staging == "nearw") o.staging = cuda::Staging::near_weights;
  else if (a.staging == "offchip") o.staging = cuda::Staging::off_chip;
  else o.staging = cuda::Staging::tensor_core;
  return o;
}
}  // namespace
#endif

void run_cuda_eval(const CudaBenchArgs& a, const DataOptions& data, int64_t batch) {
#ifndef DEFTNN_HAVE_CUDA
  (void)a;
  (void)data;
  (void)batch;
  throw Error("--device cuda: this deftnn was built without the CUDA backend (configure on a "
              "machine with nvcc; see README, 'On an NVIDIA GPU')");
#else
  if (!cuda::available()) throw Error("--device cuda: no usable CUDA device on this machine");
  Model m = load_model(a.model);
  Dataset te = load_fashion_mnist(data.dir, false, data.limit);
  const int pad = data.pad >= 0 ? data.pad : static_cast<int>((m.input_shape().back() - te.images.dim(3)) / 2);
  if (pad > 0) te = pad_images(te, pad);
  const cuda::SessionOptions o = session_options(a);
  const int64_t n = te.size(), per = te.images.numel() / std::max<int64_t>(n, 1);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t correct = 0;
  std::unique_ptr<cuda::Session> full, rest;
  for (int64_t i0 = 0; i0 < n; i0 += batch) {
    const int64_t b = std::min(batch, n - i0);
    std::unique_ptr<cuda::Session>& s = b == batch ? full : rest;
    if (!s) s = std::make_unique<cuda::Session>(m, b, o);
    Tensor x(s->input_shape());
    std::copy(te.images.data() + i0 * per, te.images.data() + (i0 + b) * per, x.data());
    const Tensor y = s->run(x);
    const int64_t classes = y.numel() / b;
    for (int64_t j = 0; j < b; ++j) {
      const float* r = y.data() + j * classes;
      correct += (std::max_element(r, r + classes) - r) == te.labels[static_cast<size_t>(i0 + j)];
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double top1 = static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(n, 1));
  std::printf("%s on %s, GPU (%s): conv %s, fc %s, staging %s: top-1 %.2f%%  (%lld images, %.2f s)\n",
              a.model.c_str(), te.name.c_str(), cuda::device_name().c_str(), a.conv_format.c_str(),
              a.fc_format.c_str(), a.staging.c_str(), 100 * top1, static_cast<long long>(n), secs);
  write_json(a.json, {{"model", a.model}, {"device", cuda::device_name()}, {"conv_format", a.conv_format},
                      {"fc_format", a.fc_format}, {"staging", a.staging}, {"top1", top1}, {"count", n}});
#endif
}

void run_cuda_bench(const CudaBenchArgs& a) {
#ifndef DEFTNN_HAVE_CUDA
  (void)a;
  throw Error("--device cuda: this deftnn was built without the CUDA backend (configure on a "
              "machine with nvcc; see README, 'On an NVIDIA GPU')");
#else
  if (!cuda::available()) throw Error("--device cuda: no usable CUDA device on this machine");
  Model m = open_model(a.model, parse_shape(a.input), a.classes);
  const cuda::SessionOptions o = session_options(a);
  json runs = json::array();
  for (int64_t b : a.batches) {
    cuda::Session s(m, b, o);
    // One forward on the same random input through both engines: the largest difference.
    Tensor x(s.input_shape());
    Rng r(7);
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(r.uniform());
    const Tensor gpu = s.run(x);
    const Tensor& cpu = m.forward(x);
    double peak = 0, err = 0;
    for (int64_t i = 0; i < cpu.numel(); ++i) {
      peak = std::max(peak, std::fabs(static_cast<double>(cpu[i])));
      err = std::max(err, std::fabs(static_cast<double>(cpu[i]) - gpu[i]));
    }
    const double ms = s.time_ms(a.iters);
    const auto steps = s.layer_ms(std::max(3, a.iters / 4));
    std::printf("%s on %s, batch %lld: %s\n", a.model.c_str(), cuda::device_name().c_str(),
                static_cast<long long>(b), s.summary().c_str());
    std::printf("  forward (one CUDA graph): %.4f ms median of %d; output vs CPU engine: max |diff| %.3g "
                "(%.2g of the largest |output|)\n", ms, a.iters, err, peak > 0 ? err / peak : 0.0);
    std::printf("  %-14s %10s  (launched one by one)\n", "step", "ms");
    json layers = json::array();
    for (const auto& [name, t] : steps) {
      std::printf("  %-14s %10.4f\n", name.c_str(), t);
      layers.push_back({{"name", name}, {"ms", t}});
    }
    runs.push_back({{"batch", b}, {"ms", ms}, {"max_abs_diff_vs_cpu", err}, {"steps", layers}});
  }
  write_json(a.json, {{"model", a.model}, {"device", cuda::device_name()}, {"conv_format", a.conv_format},
                      {"fc_format", a.fc_format}, {"staging", a.staging}, {"runs", runs}});
#endif
}

}  // namespace deftnn::cli
