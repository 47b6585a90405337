// `deftnn bench MODEL --device cuda`: a model on the CUDA backend (cuda::Session), per step and
// end to end, checked against the CPU engine's output. Compiled in every build; without the CUDA
// backend (DEFTNN_HAVE_CUDA unset) it says so.
#include "cli/common.h"
#ifdef DEFTNN_HAVE_CUDA
#include "deftnn/cuda.h"
#endif

namespace deftnn::cli {

void run_cuda_bench(const CudaBenchArgs& a) {
#ifndef DEFTNN_HAVE_CUDA
  (void)a;
  throw Error("--device cuda: this deftnn was built without the CUDA backend (configure on a "
              "machine with nvcc; see README, 'On an NVIDIA GPU')");
#else
  if (!cuda::available()) throw Error("--device cuda: no usable CUDA device on this machine");
  Model m = open_model(a.model, parse_shape(a.input), a.classes);
  cuda::SessionOptions o;
  o.conv_format = format_from_name(a.conv_format);
  o.fc_format = format_from_name(a.fc_format);
  if (a.staging == "near") o.staging = cuda::Staging::near_compute;
  else if (a.staging == "nearw") o.staging = cuda::Staging::near_weights;
  else if (a.staging == "offchip") o.staging = cuda::Staging::off_chip;
  else o.staging = cuda::Staging::tensor_core;
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
