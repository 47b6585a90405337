// Winograd F(2x2, 3x3) against the direct kernels, per layer, side by side in one run: the 3x3
// stride-1 convs of ResNet-18, VGG-11, CaffeNet (conv3) and SqueezeNet 1.1 at batch 1 and 16,
// each as an inference layer of a frozen model (weights transformed / packed once), with the
// bias and ReLU fused as in the network. Direct and Winograd calls alternate in rounds; medians.
//   ratio = Winograd time / direct time (below 1: Winograd faster); "auto" says whether the
//   default policy picks Winograd for the layer (src/ops/conv.cpp, use_winograd).
// Hot caches: the same layer runs back to back, so its weights stay in L2/L3 (in a network they
// may come from DRAM, which favours the direct kernel's smaller weights where tiles are few).
// --format bf16 (avx512_bf16): the layers in native bf16, Winograd's bf16 variant against the
// bf16 direct kernels.
// Usage: bench_winograd [--json out.json] [--rounds R] [--format f32|bf16]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "deftnn/gemm.h"
#include "deftnn/model.h"
#include "gemm/winograd.h"

using namespace deftnn;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Spec {
  const char* name;
  int64_t C, H, O;
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  int rounds = 7;
  std::string format = "f32";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--format" && i + 1 < argc) format = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_winograd [--json out.json] [--rounds R] [--format f32|bf16]\n");
      return 2;
    }
  }
  const bool bf16 = format == "bf16";
  if (!bf16 && format != "f32") {
    std::fprintf(stderr, "bench_winograd: --format must be f32 or bf16, not '%s'\n", format.c_str());
    return 2;
  }
  if (bf16 && active_isa() != Isa::avx512_bf16) {
    std::printf("bench_winograd --format bf16: needs avx512_bf16 (this CPU: %s); skipped\n",
                isa_name(active_isa()));
    return 0;
  }
  const std::vector<Spec> specs = {
      {"resnet18 layer1", 64, 56, 64},     {"resnet18 layer2", 128, 28, 128},
      {"resnet18 layer3", 256, 14, 256},   {"resnet18 layer4", 512, 7, 512},
      {"vgg11 conv2", 64, 112, 128},       {"vgg11 conv4", 256, 56, 256},
      {"vgg11 conv6", 512, 28, 512},       {"caffenet conv3", 256, 13, 384},
      {"squeeze expand 55", 16, 55, 64},   {"squeeze expand 27", 32, 27, 128},
      {"squeeze expand 13", 64, 13, 256},
  };
  std::printf("Winograd F(2x2,3x3) vs direct, 3x3 stride 1 pad 1 + bias + ReLU, frozen, %s, "
              "%d thread(s), ISA %s, %d rounds, hot caches\n",
              format.c_str(), omp_get_max_threads(), isa_name(active_isa()), rounds);
  std::printf("%-20s %5s %5s %5s %5s %10s %10s %7s %5s\n", "layer", "batch", "C", "HxW", "O",
              "direct ms", "wino ms", "ratio", "auto");
  std::string js = "{\"threads\": " + std::to_string(omp_get_max_threads()) + ", \"isa\": \"" +
                   isa_name(active_isa()) + "\", \"format\": \"" + format + "\", \"layers\": [";
  bool first = true;
  const WinogradPolicy saved = winograd_policy();
  for (const Spec& s : specs)
    for (int64_t N : {int64_t{1}, int64_t{16}}) {
      Model m({s.C, s.H, s.H});
      Attrs ca = Attrs().set("out_channels", s.O).set("kernel", int64_t{3}).set("pad", int64_t{1});
      if (bf16) ca.set("format", "bf16");
      m.add("conv", "conv", ca);
      m.add("relu", "relu", Attrs());
      m.init_params(1);
      m.freeze(true);
      Tensor x({N, s.C, s.H, s.H});
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i % 9973));
      const double flops = 2.0 * N * s.C * s.O * 9 * s.H * s.H;
      const int iters = std::clamp(static_cast<int>(2e9 / flops), 2, 50);
      auto run = [&](WinogradPolicy p) {
        set_winograd_policy(p);
        std::vector<double> t;
        for (int i = 0; i < iters; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          m.forward(x);
          t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        return median(t);
      };
      run(WinogradPolicy::off);   // warm: pack and transform the weights
      run(WinogradPolicy::on);
      std::vector<double> td, tw;
      for (int r = 0; r < rounds; ++r) {
        td.push_back(run(WinogradPolicy::off));
        tw.push_back(run(WinogradPolicy::on));
      }
      const bool automatic =
          gemm::winograd_pays(active_isa(), s.C, s.O, N * ((s.H + 1) / 2) * ((s.H + 1) / 2), bf16);
      const double md = median(td), mw = median(tw);
      std::printf("%-20s %5lld %5lld %5lld %5lld %10.3f %10.3f %7.3f %5s\n", s.name,
                  static_cast<long long>(N), static_cast<long long>(s.C),
                  static_cast<long long>(s.H), static_cast<long long>(s.O), md, mw, mw / md,
                  automatic ? "wino" : "dir");
      std::fflush(stdout);
      char line[400];
      std::snprintf(line, sizeof line,
                    "%s\n  {\"layer\": \"%s\", \"batch\": %lld, \"C\": %lld, \"H\": %lld, \"O\": %lld, "
                    "\"direct_ms\": %.6f, \"winograd_ms\": %.6f, \"ratio\": %.6f, \"auto_winograd\": %s}",
                    first ? "" : ",", s.name, static_cast<long long>(N), static_cast<long long>(s.C),
                    static_cast<long long>(s.H), static_cast<long long>(s.O), md, mw, mw / md,
                    automatic ? "true" : "false");
      js += line;
      first = false;
    }
  set_winograd_policy(saved);
  js += "\n]}\n";
  if (!json_path.empty()) {
    const std::string tmp = json_path + ".tmp";
    std::ofstream f(tmp);
    f << js;
    f.close();
    if (!f || std::rename(tmp.c_str(), json_path.c_str()) != 0) {
      std::fprintf(stderr, "bench_winograd: cannot write '%s'\n", json_path.c_str());
      return 1;
    }
  }
  return 0;
}
