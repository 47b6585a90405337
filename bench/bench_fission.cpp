// bench_fission: near-compute data fission GEMM vs the fp32 engine vs off-chip packing, on the
// CaffeNet layer shapes (paper §5.4-5.5, §5.8), side by side in one run, 2 threads, medians.
// Per shape and variant: median time, GFLOP/s, the roofline time (FLOPs at the FMA peak measured
// in this run - the vdpbf16ps peak for native bf16 - and bytes at the DRAM read bandwidth
// measured in this run), time / roof, and the effective bytes moved per FLOP (weights in their
// stored format + fp32 activations in + fp32 results out). fc at N = 1 is run hot (the same
// weights every call) and cold (rotating through weight copies totalling > 2.5x the 32 MiB L3).
// At N = 1 the read_* rows time a plain streaming read (a vector sum, all threads) of the same
// packed weight bytes in 32-, 16- and 8-bit formats, hot and cold like the GEMVs: the bandwidth
// a GEMV of that format could reach here, next to what it does reach.
//   usage: bench_fission [--quick] [--threads T] [--json FILE] [--shapes conv1,fc6_1,...]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/gemm.h"
#include "deftnn/tensor.h"
#include "gemm/fission.h"

using namespace deftnn;
using Clock = std::chrono::steady_clock;

namespace {

volatile double g_sink = 0;   // keeps the probe loops from being optimised away

double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// ---- machine peaks, measured in this run ----
__attribute__((target("avx512f"))) double fma_loop_512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-7f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t t = 0; t < iters; ++t)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx512f,avx512bf16"))) double dpbf16_loop(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i);
  __m512i xi = _mm512_set1_epi32(0x3F803F80), yi = _mm512_set1_epi32(0x33d633d6);
  const __m512bh x = reinterpret_cast<__m512bh&>(xi), y = reinterpret_cast<__m512bh&>(yi);
  for (int64_t t = 0; t < iters; ++t)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
// GFLOP/s over all threads: flops per iteration 12 vectors x 16 lanes x 2 (x2 for dpbf16).
double measure_peak(bool bf16, int threads) {
  const int64_t iters = 20'000'000;
  std::vector<double> runs;
  double sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now();
#pragma omp parallel num_threads(threads)
    {
      const double v = bf16 ? dpbf16_loop(iters) : fma_loop_512(iters);
#pragma omp atomic
      sink += v;
    }
    runs.push_back((now() - t0));
  }
  g_sink = sink;
  std::sort(runs.begin(), runs.end());
  const double flops = 12.0 * 16 * 2 * (bf16 ? 2 : 1) * iters * threads;
  return flops / runs[0] / 1e9;   // best of 3: the machine's capability
}
// A plain streaming read of f[0, n) (64-byte aligned) by `threads` threads: the library's DRAM
// probe on each thread's share (a multiple of 64 floats), the few floats left summed here.
double stream_read(const float* f, int64_t n, int threads) {
  double total = 0;
  int64_t covered = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t chunk = n / nt / 64 * 64;
    if (t == 0) covered = chunk * nt;
    total += gemm::read_sum__avx512(f + t * chunk, chunk);   // the library's probe
  }
  for (int64_t i = covered; i < n; ++i) total += f[i];
  return total;
}
double measure_bw(int threads) {
  const int64_t n = int64_t{64} << 20;   // 256 MiB
  float* p = aligned_alloc_floats(n);
#pragma omp parallel for num_threads(threads)
  for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
  std::vector<double> runs;
  double sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now();
    sink += stream_read(p, n, threads);
    runs.push_back(now() - t0);
  }
  g_sink = sink;
  aligned_free(p);
  std::sort(runs.begin(), runs.end());
  return n * 4.0 / runs[0] / 1e9;
}

struct LayerShape {
  const char* name;
  int64_t M, K, N;
};
const LayerShape kShapes[] = {
    {"conv1", 96, 363, 3025},  {"conv2g", 128, 1200, 729}, {"conv3", 384, 2304, 169},
    {"conv4g", 192, 1728, 169}, {"conv5g", 128, 1728, 169}, {"fc6_1", 4096, 9216, 1},
    {"fc6_32", 4096, 9216, 32}, {"fc7_1", 4096, 4096, 1},   {"fc7_32", 4096, 4096, 32},
};

struct Variant {
  std::string name;
  int kind;   // 0 fp32 sgemm_packed, 1 fp32 sgemm (GEMV path at N = 1), 2 fission,
              // 3 streaming read of f's packed weights (N = 1 only; no GEMM)
  Format f = Format::f32;
  FissionMode mode = FissionMode::fission;
  Isa isa = Isa::avx512;
  bool prefetch = true;   // false: the GEMV weight stream without software prefetch (N = 1 only)
};

double weight_bytes(const Variant& v, int64_t M, int64_t K) {
  if (v.kind < 2) return 4.0 * M * K;
  return static_cast<double>(encoded_bytes(v.f, M * K));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  std::string shape, variant, cache;
  double ms, gflops, roof_ms, bytes_per_flop;
  double min_ms = 0;
  double vs_fp32 = 0;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string json_path, only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--shapes" && i + 1 < argc) only = "," + std::string(argv[++i]) + ",";
  }
  int threads = 2;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--threads") threads = std::atoi(argv[i + 1]);
  omp_set_num_threads(threads);
  const Isa top = detected_isa();
  if (top < Isa::avx512) {
    std::printf("bench_fission: needs AVX-512 for the peak probes (detected %s)\n", isa_name(top));
    return 0;
  }
  const double peak = measure_peak(false, threads);
  const double peak_bf16 = top >= Isa::avx512_bf16 ? measure_peak(true, threads) : peak;
  const double bw = measure_bw(threads);
  std::printf("machine: %d threads, fp32 FMA peak %.0f GFLOP/s, vdpbf16ps peak %.0f GFLOP/s, "
              "DRAM read %.1f GB/s, isa %s\n",
              threads, peak, peak_bf16, bw, isa_name(top));

  std::vector<Variant> vars;
  vars.push_back({"fp32_packed", 0});
  vars.push_back({"fp32_sgemm", 1});
  vars.push_back({"fis_f32", 2, Format::f32});
  vars.push_back({"half", 2, Format::half});
  vars.push_back({"deft16", 2, Format::deft16});
  vars.push_back({"deft16q", 2, Format::deft16q});
  vars.push_back({"bf16", 2, Format::bf16, FissionMode::fission, top});
  vars.push_back({"deft8_e4", 2, Format::deft8_e4});
  vars.push_back({"deft8_e5", 2, Format::deft8_e5});
  // The same GEMV kernels without the weight-stream prefetch (set_fission_gemv_prefetch), N = 1.
  vars.push_back({"half_nopf", 2, Format::half, FissionMode::fission, Isa::avx512, false});
  vars.push_back({"deft16_nopf", 2, Format::deft16, FissionMode::fission, Isa::avx512, false});
  vars.push_back({"bf16_nopf", 2, Format::bf16, FissionMode::fission, top, false});
  vars.push_back({"deft8_e4_nopf", 2, Format::deft8_e4, FissionMode::fission, Isa::avx512, false});
  vars.push_back({"avx2_f32", 2, Format::f32, FissionMode::fission, Isa::avx2});
  vars.push_back({"avx2_deft16", 2, Format::deft16, FissionMode::fission, Isa::avx2});
  vars.push_back({"avx2_deft16q", 2, Format::deft16q, FissionMode::fission, Isa::avx2});
  vars.push_back({"avx2_deft16q_nopf", 2, Format::deft16q, FissionMode::fission, Isa::avx2, false});
  vars.push_back({"off_half", 2, Format::half, FissionMode::offchip});
  vars.push_back({"off_deft16", 2, Format::deft16, FissionMode::offchip});
  vars.push_back({"off_bf16", 2, Format::bf16, FissionMode::offchip, top});
  vars.push_back({"off_deft8_e4", 2, Format::deft8_e4, FissionMode::offchip});
  vars.push_back({"read_32bit", 3, Format::f32});
  vars.push_back({"read_16bit", 3, Format::bf16});
  vars.push_back({"read_8bit", 3, Format::deft8_e4});

  std::vector<Result> results;
  const double budget = quick ? 0.05 : 0.25;   // seconds per (shape, variant)
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const LayerShape& sh : kShapes) {
    if (!only.empty() && only.find("," + std::string(sh.name) + ",") == std::string::npos)
      continue;
    const int64_t M = sh.M, K = sh.K, N = sh.N;
    std::vector<float> A(M * K), B(K * N), C(M * N);
    for (auto& v : A) v = dist(gen);
    for (auto& v : B) v = dist(gen);
    const double flops = 2.0 * M * N * K;
    double fp32_ms[2] = {0, 0};
    for (int cold = 0; cold <= (N == 1 ? 1 : 0); ++cold) {
      std::printf("\n%-7s M=%lld K=%lld N=%lld %s\n", sh.name, (long long)M, (long long)K,
                  (long long)N, N == 1 ? (cold ? "(cold: rotating weight copies)" : "(hot)") : "");
      std::printf("  %-14s %9s %9s %9s %9s %8s %8s %7s\n", "variant", "med_ms", "min_ms",
                  "GFLOP/s", "roof_ms", "t/roof", "B/FLOP", "vs_fp32");
      for (const Variant& v : vars) {
        // sgemm == sgemm_packed + packing A otherwise; the reads are for the GEMVs
        if ((v.kind == 1 || v.kind == 3) && N != 1) continue;
        if (!v.prefetch && N != 1) continue;   // the prefetch is a GEMV-only change
        const double wb = weight_bytes(v, M, K);
        const int copies = cold ? std::max(2, static_cast<int>(80e6 / wb) + 1) : 1;
        set_active_isa(v.isa);
        std::vector<PackedA> pk;
        std::vector<FissionPackedA> fk;
        for (int c = 0; c < copies; ++c) {
          if (v.kind == 0) pk.emplace_back(false, M, K, A.data(), K);
          if (v.kind >= 2) fk.emplace_back(v.f, Rounding::nearest_even, false, M, K, A.data(), K);
        }
        std::vector<std::vector<float>> Acopies;
        if (v.kind == 1)
          for (int c = 0; c < copies; ++c) Acopies.push_back(A);
        set_active_isa(top);
        auto call = [&](int c) {
          if (v.kind == 0) sgemm_packed(pk[c], false, N, 1.0f, B.data(), N, 0.0f, C.data(), N);
          else if (v.kind == 1)
            sgemm(false, false, M, N, K, 1.0f, Acopies[c].data(), K, B.data(), N, 0.0f,
                  C.data(), N);
          else if (v.kind == 3) g_sink = g_sink + stream_read(reinterpret_cast<const float*>(fk[c].strip(0)),
                                                            fk[c].bytes() / 4, threads);
          else fission_gemm(fk[c], false, N, 1.0f, B.data(), N, 0.0f, C.data(), N, v.mode);
        };
        set_fission_gemv_prefetch(v.prefetch);
        for (int c = 0; c < copies; ++c) call(c);   // warm-up (first touch, buffers)
        std::vector<double> ts;
        const double start = now();
        int c = 0;
        while ((ts.size() < 5 || now() - start < budget) && ts.size() < 2000) {
          c = (c + 1) % copies;
          const double t0 = now();
          call(c);
          ts.push_back(now() - t0);
        }
        set_fission_gemv_prefetch(true);
        const double ms = median(ts) * 1e3;
        const double bytes = wb + 4.0 * K * N + 4.0 * M * N;
        const bool native = v.f == Format::bf16 && v.kind == 2 && v.mode == FissionMode::fission &&
                            v.isa == Isa::avx512_bf16;
        const double pk_flops = native ? peak_bf16 : peak;
        const double roof = std::max(flops / (pk_flops * 1e9), bytes / (bw * 1e9)) * 1e3;
        Result r{sh.name, v.name, N == 1 ? (cold ? "cold" : "hot") : "-", ms, flops / ms / 1e6,
                 roof, bytes / flops};
        if (v.kind == 0) fp32_ms[cold] = ms;
        if (v.kind == 1 && N == 1) fp32_ms[cold] = std::min(fp32_ms[cold], ms);
        r.vs_fp32 = fp32_ms[cold] / ms;
        r.min_ms = *std::min_element(ts.begin(), ts.end()) * 1e3;
        std::printf("  %-14s %9.3f %9.3f %9.1f %9.3f %8.2f %8.3f %6.2fx\n", v.name.c_str(), ms,
                    r.min_ms, r.gflops, roof, ms / roof, r.bytes_per_flop, r.vs_fp32);
        std::fflush(stdout);
        results.push_back(r);
      }
    }
  }
  std::string js = "{\n  \"threads\": " + std::to_string(threads) +
                   ",\n  \"fp32_peak_gflops\": " + std::to_string(peak) +
                   ",\n  \"bf16_peak_gflops\": " + std::to_string(peak_bf16) +
                   ",\n  \"dram_read_gbps\": " + std::to_string(bw) + ",\n  \"results\": [\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "    {\"shape\": \"%s\", \"variant\": \"%s\", \"cache\": \"%s\", \"ms\": %.4f, \"min_ms\": %.4f, "
                  "\"gflops\": %.2f, \"roof_ms\": %.4f, \"bytes_per_flop\": %.4f, "
                  "\"speedup_vs_fp32\": %.3f}%s\n",
                  r.shape.c_str(), r.variant.c_str(), r.cache.c_str(), r.ms, r.min_ms, r.gflops, r.roof_ms,
                  r.bytes_per_flop, r.vs_fp32, i + 1 < results.size() ? "," : "");
    js += buf;
  }
  js += "  ]\n}\n";
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f) {
      std::fputs(js.c_str(), f);
      std::fclose(f);
      std::printf("\nJSON written to %s\n", json_path.c_str());
    }
  } else {
    std::printf("\n%s", js.c_str());
  }
  return 0;
}
