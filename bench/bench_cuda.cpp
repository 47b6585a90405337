// bench_cuda: the paper's per-layer GPU comparison (Fig. 10, 11, 18) on CaffeNet's layers, on the
// CUDA backend, side by side in one run: cuBLAS sgemm (the peer; im2col is ours for both),
// deftnn's fp32 kernel, near-compute data fission in each format (both operands, and the weights
// only), the off-chip packing baseline in the same formats, synapse vector elimination at 50% retained (fp32 and with Deft-16Q), and
// cuBLAS's fp16 tensor-core GEMM for orientation. Each figure is the median of --reps timed runs
// (CUDA events) after warm-up, the L2 cache flushed before each run (each layer's weights come
// from device memory, as in a whole network), unless --warm.
//
// Usage: bench_cuda [--batch 1,32] [--reps 30] [--warm] [--json FILE]
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "deftnn/cuda.h"
#include "deftnn/error.h"
#include "deftnn/formats.h"
#include "deftnn/rng.h"

using namespace deftnn;

namespace {

#define CK(x)                                                                        \
  do {                                                                               \
    if ((x) != cudaSuccess) {                                                        \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(x), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

struct Layer {
  const char* name;
  bool conv;
  int groups;
  int64_t M;   // outputs per group
  cuda::ConvGeometry g;   // conv: per group; fc: C = K, H = W = 1
};

std::vector<Layer> caffenet() {
  auto conv = [](const char* n, int groups, int64_t M, int64_t C, int64_t H, int64_t k, int64_t s,
                 int64_t p) {
    Layer l{n, true, groups, M, {}};
    l.g.C = C; l.g.H = H; l.g.W = H; l.g.kh = k; l.g.kw = k; l.g.sh = s; l.g.sw = s; l.g.ph = p; l.g.pw = p;
    return l;
  };
  auto fc = [](const char* n, int64_t M, int64_t K) {
    Layer l{n, false, 1, M, {}};
    l.g.C = K; l.g.H = 1; l.g.W = 1;
    return l;
  };
  return {conv("conv1", 1, 96, 3, 227, 11, 4, 0), conv("conv2", 2, 128, 48, 27, 5, 1, 2),
          conv("conv3", 1, 384, 256, 13, 3, 1, 1), conv("conv4", 2, 192, 192, 13, 3, 1, 1),
          conv("conv5", 2, 128, 192, 13, 3, 1, 1), fc("fc6", 4096, 9216), fc("fc7", 4096, 4096),
          fc("fc8", 1000, 4096)};
}

std::vector<float> random_vec(int64_t n, uint64_t seed, float scale) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = scale * static_cast<float>(r.normal());
  return v;
}

// Median of `reps` runs, the L2 flushed before each unless warm (cuda::time_ms).
struct Timer {
  int reps;
  bool warm;
  double operator()(const std::function<void()>& fn) const { return cuda::time_ms(fn, 3, reps, !warm); }
};

struct Row {
  std::string layer, config;
  int batch;
  double ms, ratio;   // ratio: deftnn fp32 time / this time (> 1: faster)
  double gflops, gbytes_weights;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 32};
  int reps = 30;
  bool warm = false;
  std::string json = "bench_cuda.json";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "bench_cuda: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--batch") {
      batches.clear();
      std::string s = next();
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        batches.push_back(std::atoi(s.substr(p, q - p).c_str()));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--warm") warm = true;
    else if (a == "--json") json = next();
    else { std::fprintf(stderr, "bench_cuda: unknown option %s\n", a.c_str()); return 2; }
  }
  if (!cuda::available()) {
    std::fprintf(stderr, "bench_cuda: no CUDA device\n");
    return 1;
  }
  std::printf("device: %s, L2 %lld MiB, %s caches, median of %d runs\n", cuda::device_name().c_str(),
              static_cast<long long>(cuda::l2_bytes() >> 20), warm ? "warm" : "flushed", reps);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { std::fprintf(stderr, "cuBLAS init failed\n"); return 1; }
  const Timer timer{reps, warm};
  std::vector<Row> rows;
  const Format fmts[] = {Format::half, Format::deft16, Format::deft16q, Format::deft8_e4};

  for (int batch : batches) {
    for (const Layer& L : caffenet()) {
      const cuda::ConvGeometry& g = L.g;
      const int64_t K = g.K(), M = L.M, G = L.groups;
      const int64_t N = L.conv ? batch * g.OH() * g.OW() : batch;
      // Batch-1 fully connected inputs stay a plain K x batch matrix (the weight-row kernel reads
      // it in place); the tiled kernel's operands have ld a multiple of 16.
      const bool rows_kernel = !L.conv && batch <= 8;
      const int64_t ld = rows_kernel ? batch : cuda::padded_ld(N);
      const double flops = 2.0 * G * M * N * K;
      // Input: NCHW images with G * C channels (conv), or K x batch (fc, B operand as is).
      const int64_t img = G * g.C * g.H * g.W;
      const auto xin = random_vec(img * batch, 7, 1.0f);
      cuda::DeviceBuffer dx(xin.size() * 4);
      dx.upload(xin.data(), xin.size() * 4);
      // fc input as a K x batch row-major matrix (ld = batch; the batch-1 kernel reads it in place).
      std::vector<float> xfc;
      cuda::DeviceBuffer dxfc;
      if (!L.conv) {
        xfc.resize(static_cast<size_t>(K * ld), 0.0f);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t b = 0; b < batch; ++b) xfc[k * ld + b] = xin[b * K + k];
        dxfc = cuda::DeviceBuffer(xfc.size() * 4);
        dxfc.upload(xfc.data(), xfc.size() * 4);
      }
      const auto w = random_vec(G * M * K, 3, 0.05f);
      cuda::DeviceBuffer dc(static_cast<size_t>(G * M * ld) * 4);
      cuda::DeviceBuffer dcol(static_cast<size_t>(G * K * ld) * 4);   // fp32 column matrices

      // Half the synapse vectors retained: every other row (timing does not depend on which).
      // The retained count is rounded up to the kernel's k step (16), like synapse_search does.
      const int64_t Kr = std::min(K, (K / 2 + 15) / 16 * 16);
      std::vector<int32_t> keep(static_cast<size_t>(Kr));
      for (int64_t i = 0; i < Kr; ++i)
        keep[static_cast<size_t>(i)] = static_cast<int32_t>(2 * i < K ? 2 * i : 2 * i - K + (K % 2 ? 0 : 1));
      cuda::DeviceBuffer dkeep(keep.size() * 4);
      dkeep.upload(keep.data(), keep.size() * 4);

      // One layer: per group, build B (im2col for conv; fc: the input itself, or the gathered
      // retained rows) in format fb, then the GEMM.
      auto run_layer = [&](const std::vector<cuda::PackedWeights>& pw, Format fb, Rounding rb,
                           cuda::Staging st, bool sve) {
        const int64_t kk = sve ? Kr : K;
        for (int64_t gi = 0; gi < G; ++gi) {
          const float* xg = dx.as<float>() + gi * g.C * g.H * g.W;
          void* col = static_cast<char*>(dcol.data()) + gi * K * ld * 4;
          cuda::Operand B{fb, col, kk, N, ld};
          if (L.conv) {
            cuda::im2col(g, batch, xg, img, sve ? dkeep.as<int32_t>() : nullptr, kk, fb, rb, col, ld);
          } else if (sve || fb != Format::f32) {
            // The fc input's packing: a 1x1 "im2col" of the K x 1 images, reading the retained rows.
            cuda::ConvGeometry gf = g;
            cuda::im2col(gf, batch, dx.as<float>(), K, sve ? dkeep.as<int32_t>() : nullptr, kk, fb, rb, col, ld);
          } else {
            B = cuda::Operand{Format::f32, dxfc.data(), K, N, ld};
          }
          cuda::gemm(pw[static_cast<size_t>(gi)].operand, B, dc.as<float>() + gi * M * ld, ld, 1.0f, st);
        }
      };
      auto pack = [&](Format f, bool sve) {
        std::vector<cuda::PackedWeights> pw;
        for (int64_t gi = 0; gi < G; ++gi) {
          const float* wg = w.data() + gi * M * K;
          if (!sve) {
            pw.push_back(cuda::pack_weights(wg, M, K, K, f, Rounding::nearest_even));
          } else {
            std::vector<float> wt(static_cast<size_t>(M * Kr));
            for (int64_t m = 0; m < M; ++m)
              for (int64_t i = 0; i < Kr; ++i) wt[m * Kr + i] = 2.0f * wg[m * K + keep[static_cast<size_t>(i)]];
            pw.push_back(cuda::pack_weights(wt.data(), M, Kr, Kr, f, Rounding::nearest_even));
          }
        }
        return pw;
      };
      auto weight_gb = [&](Format f, int64_t kk) {
        return static_cast<double>(G * M * encoded_bytes(f, kk)) / 1e9;
      };

      // Dense fp32, ours.
      const auto p32 = pack(Format::f32, false);
      const double t32 = timer([&] { run_layer(p32, Format::f32, Rounding::nearest_even, cuda::Staging::near_compute, false); });
      auto add = [&](const std::string& cfg, double ms, double wgb, double fl) {
        rows.push_back(Row{L.name, cfg, batch, ms, t32 / ms, fl / ms / 1e6, wgb});
      };
      // cuBLAS sgemm on the same column matrix (our im2col, fp32).
      {
        const float one = 1.0f, zero = 0.0f;
        const double tb = timer([&] {
          for (int64_t gi = 0; gi < G; ++gi) {
            const float* col;
            if (L.conv) {
              cuda::im2col(g, batch, dx.as<float>() + gi * g.C * g.H * g.W, img, nullptr, K, Format::f32,
                           Rounding::nearest_even, static_cast<char*>(dcol.data()) + gi * K * ld * 4, ld);
              col = reinterpret_cast<const float*>(static_cast<char*>(dcol.data()) + gi * K * ld * 4);
            } else {
              col = dxfc.as<float>();
            }
            cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
                        &one, col, static_cast<int>(ld), static_cast<const float*>(p32[static_cast<size_t>(gi)].operand.data),
                        static_cast<int>(p32[static_cast<size_t>(gi)].operand.ld), &zero,
                        dc.as<float>() + gi * M * ld, static_cast<int>(ld));
          }
        });
        add("cublas_sgemm", tb, weight_gb(Format::f32, K), flops);
      }
      add("fp32", t32, weight_gb(Format::f32, K), flops);
      // Fission in each format, and the off-chip packing baseline.
      for (Format f : fmts) {
        const bool d8 = f == Format::deft8_e4;
        // Activations: the same 16-bit format (packed by im2col), or fp32 with Deft-8 weights and
        // for the batch-1 fully connected layers (the weight-row kernel reads them in place).
        const Format fb = (d8 || (!L.conv && batch <= 8)) ? Format::f32 : f;
        const Rounding rb = f == Format::half ? Rounding::nearest_even : Rounding::truncate;
        const auto pf = pack(f, false);
        for (cuda::Staging st : {cuda::Staging::near_compute, cuda::Staging::near_weights, cuda::Staging::off_chip}) {
          if (rows_kernel && st != cuda::Staging::near_compute) continue;   // no staged tile
          if (d8 && st == cuda::Staging::near_weights) continue;            // = near_compute
          const double t = timer([&] { run_layer(pf, fb, rb, st, false); });
          const char* suffix = st == cuda::Staging::off_chip ? "_offchip" : st == cuda::Staging::near_weights ? "_nearw" : "";
          add(std::string(format_name(f)) + suffix, t, weight_gb(f, K), flops);
        }
      }
      // The tensor cores (the GPU's hardware fission unit): half, Deft-16 (bf16), Deft-8 weights
      // widened to bf16 when staged with Deft-16 activations. Batch-1 fc: the rows kernel above.
      if (!rows_kernel)
        for (Format f : {Format::half, Format::deft16, Format::deft8_e4}) {
          const Format fb = f == Format::half ? Format::half : Format::deft16;
          const auto pf = pack(f, false);
          const double t = timer([&] { run_layer(pf, fb, Rounding::nearest_even, cuda::Staging::tensor_core, false); });
          add(std::string(format_name(f)) + "_tc", t, weight_gb(f, K), flops);
        }
      // Synapse vector elimination at 50%, fp32 and with Deft-16Q.
      {
        const auto ps = pack(Format::f32, true);
        const double t = timer([&] { run_layer(ps, Format::f32, Rounding::nearest_even, cuda::Staging::near_compute, true); });
        add("sve50_fp32", t, weight_gb(Format::f32, Kr), flops * Kr / K);
        const auto pq = pack(Format::deft16q, true);
        const Format fb = rows_kernel ? Format::f32 : Format::deft16q;
        const double tq = timer([&] { run_layer(pq, fb, Rounding::truncate, cuda::Staging::near_weights, true); });
        add("sve50_deft16q_nearw", tq, weight_gb(Format::deft16q, Kr), flops * Kr / K);
        if (!rows_kernel) {
          const auto pt = pack(Format::deft16, true);
          const double tt = timer([&] { run_layer(pt, Format::deft16, Rounding::nearest_even, cuda::Staging::tensor_core, true); });
          add("sve50_deft16_tc", tt, weight_gb(Format::deft16, Kr), flops * Kr / K);
        }
      }
      // cuBLAS fp16 tensor cores (orientation: the GPU's own hardware "fission unit").
      {
        std::vector<__half> wh(w.size());
        for (size_t i = 0; i < w.size(); ++i) wh[i] = __float2half(w[i]);
        cuda::DeviceBuffer dwh(wh.size() * 2), dcolh(static_cast<size_t>(G * K * ld) * 2);
        dwh.upload(wh.data(), wh.size() * 2);
        const float one = 1.0f, zero = 0.0f;
        const double t = timer([&] {
          for (int64_t gi = 0; gi < G; ++gi) {
            void* col = static_cast<char*>(dcolh.data()) + gi * K * ld * 2;
            if (L.conv)
              cuda::im2col(g, batch, dx.as<float>() + gi * g.C * g.H * g.W, img, nullptr, K, Format::half,
                           Rounding::nearest_even, col, ld);
            else
              cuda::im2col(g, batch, dx.as<float>(), K, nullptr, K, Format::half, Rounding::nearest_even, col, ld);
            cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
                         &one, col, CUDA_R_16F, static_cast<int>(ld),
                         static_cast<const char*>(dwh.data()) + gi * M * K * 2, CUDA_R_16F, static_cast<int>(K),
                         &zero, dc.as<float>() + gi * M * ld, CUDA_R_32F, static_cast<int>(ld),
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
          }
        });
        add("cublas_fp16_tc", t, weight_gb(Format::half, K), flops);
      }
      CK(cudaDeviceSynchronize());
    }
  }

  // Table.
  std::printf("\n%-6s %5s %-16s %10s %8s %9s %9s\n", "layer", "batch", "config", "ms", "vs fp32",
              "GFLOP/s", "W MB");
  for (const Row& r : rows)
    std::printf("%-6s %5d %-16s %10.4f %7.2fx %9.0f %9.1f\n", r.layer.c_str(), r.batch, r.config.c_str(),
                r.ms, r.ratio, r.gflops, r.gbytes_weights * 1e3);
  // Sums over the layers (the network's GEMM layers; pooling, LRN, ReLU not included).
  std::printf("\nsum over conv1..fc8 (ms, speedup over deftnn fp32):\n");
  std::vector<std::string> cfgs;
  for (const Row& r : rows)
    if (std::find(cfgs.begin(), cfgs.end(), r.config) == cfgs.end()) cfgs.push_back(r.config);
  for (int batch : batches) {
    double base = 0;
    for (const Row& r : rows) if (r.batch == batch && r.config == "fp32") base += r.ms;
    for (const auto& c : cfgs) {
      double s = 0;
      int n = 0;
      for (const Row& r : rows) if (r.batch == batch && r.config == c) { s += r.ms; ++n; }
      if (n == 8) std::printf("  batch %2d %-16s %9.4f ms %6.2fx\n", batch, c.c_str(), s, base / s);
      else std::printf("  batch %2d %-16s (not run on every layer)\n", batch, c.c_str());
    }
  }
  // JSON.
  const std::string tmp = json + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) { std::fprintf(stderr, "bench_cuda: cannot write %s\n", json.c_str()); return 1; }
  std::fprintf(f, "{\"device\": \"%s\", \"cache\": \"%s\", \"reps\": %d, \"rows\": [\n",
               cuda::device_name().c_str(), warm ? "warm" : "flushed", reps);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f, "  {\"layer\": \"%s\", \"batch\": %d, \"config\": \"%s\", \"ms\": %.6f, "
                    "\"speedup_vs_fp32\": %.4f, \"gflops\": %.1f, \"weight_mb\": %.3f}%s\n",
                 r.layer.c_str(), r.batch, r.config.c_str(), r.ms, r.ratio, r.gflops,
                 r.gbytes_weights * 1e3, i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "]}\n");
  std::fclose(f);
  std::rename(tmp.c_str(), json.c_str());
  std::printf("\nwrote %s\n", json.c_str());
  cublasDestroy(h);
  return 0;
}
