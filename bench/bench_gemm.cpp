// bench_gemm: deftnn sgemm side by side with OpenBLAS (cblas_sgemm) and oneDNN (dnnl_sgemm) on
// the CaffeNet GEMM shapes, each also with K halved, in ONE run. Contenders are interleaved
// sample by sample (so drifting machine load hits all of them alike); each sample times a batch
// of calls; the table reports medians (and mins) per call. Also measured in the same run: the
// register-only FMA peak of the team (for % of peak on 1024^3) and the DRAM read bandwidth of a
// 512 MiB streaming read (for the N == 1 roof: time / (weight bytes / bandwidth); those calls
// read A from DRAM, rotating over copies larger than the L3 together).
//
//   bench_gemm [--threads N] [--samples S] [--json PATH] [--isa NAME] [--only SUBSTR]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "deftnn/gemm.h"
#include "deftnn/tensor.h"

#ifdef DEFTNN_HAVE_OPENBLAS
extern "C" {
// CBLAS ABI: enums are ints (CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112).
void cblas_sgemm(int order, int transa, int transb, int M, int N, int K, float alpha,
                 const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void openblas_set_num_threads(int n);
}
#endif
#ifdef DEFTNN_HAVE_DNNL
#include <dnnl.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct ShapeDef {
  const char* name;
  int64_t M, K, N;
};
const ShapeDef kShapes[] = {
    {"conv1", 96, 363, 3025},  {"conv2", 128, 1200, 729}, {"conv3", 384, 2304, 169},
    {"conv4", 192, 1728, 169}, {"conv5", 128, 1728, 169}, {"fc6_b1", 4096, 9216, 1},
    {"fc6_b64", 4096, 9216, 64}, {"fc7_b1", 4096, 4096, 1}, {"fc7_b64", 4096, 4096, 64},
    {"sq1024", 1024, 1024, 1024},
};

// ---- machine roofs ----------------------------------------------------------------------

__attribute__((target("avx512f"))) double fma_loop_zmm(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float t[16];
  _mm512_store_ps(t, s);
  return t[0];
}
__attribute__((target("avx2,fma"))) double fma_loop_ymm(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float t[8];
  _mm256_store_ps(t, s);
  return t[0];
}

// GFLOP/s of the team running independent FMA chains in registers (best of 9).
double fma_peak(int threads, bool zmm) {
  const int64_t iters = 10'000'000;
  const int lanes = zmm ? 16 : 8;
  double best = 0, sink = 0;
  for (int rep = 0; rep < 9; ++rep) {
    const double t0 = now_s();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += zmm ? fma_loop_zmm(iters) : fma_loop_ymm(iters);
    const double dt = now_s() - t0;
    best = std::max(best, threads * iters * 12.0 * lanes * 2 / dt / 1e9);
  }
  if (sink == 12345.0) std::printf(" ");
  return best;
}

__attribute__((target("avx2"))) double sum_range(const float* p, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(p + i), _mm256_load_ps(p + i + 32)));
    s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(p + i + 8), _mm256_load_ps(p + i + 40)));
    s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(p + i + 16), _mm256_load_ps(p + i + 48)));
    s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(p + i + 24), _mm256_load_ps(p + i + 56)));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  return t[0] + t[7];
}

// GB/s of a streaming read of 512 MiB by the team: {median, max} of 7 passes.
std::pair<double, double> dram_read_bw(int threads) {
  const int64_t n = int64_t{512} << 18;   // 512 MiB of floats
  float* buf = deftnn::aligned_alloc_floats(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) buf[i] = 1.0f;
  std::vector<double> bw;
  double sink = 0;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = now_s();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t chunk = n / nt / 64 * 64;
      sink += sum_range(buf + t * chunk, t == nt - 1 ? n - t * chunk : chunk);
    }
    bw.push_back(n * 4.0 / (now_s() - t0) / 1e9);
  }
  deftnn::aligned_free(buf);
  if (sink == 1.0) std::printf(" ");
  std::sort(bw.begin(), bw.end());
  return {bw[bw.size() / 2], bw.back()};
}

// ---- contenders ---------------------------------------------------------------------------

struct Problem {
  int64_t M, N, K;
  const float* A;
  const float* B;
  float* C;
};
struct Contender {
  std::string name;
  std::function<void(const Problem&)> run;
};

std::vector<Contender> contenders(int threads) {
  std::vector<Contender> v;
  v.push_back({"deftnn", [](const Problem& p) {
                 deftnn::sgemm(false, false, p.M, p.N, p.K, 1.0f, p.A, p.K, p.B, p.N, 0.0f, p.C,
                               p.N);
               }});
#ifdef DEFTNN_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  v.push_back({"openblas", [](const Problem& p) {
                 cblas_sgemm(101, 111, 111, static_cast<int>(p.M), static_cast<int>(p.N),
                             static_cast<int>(p.K), 1.0f, p.A, static_cast<int>(p.K), p.B,
                             static_cast<int>(p.N), 0.0f, p.C, static_cast<int>(p.N));
               }});
#else
  std::printf("note: OpenBLAS was not found at build time; benchmarking without it\n");
#endif
#ifdef DEFTNN_HAVE_DNNL
  v.push_back({"onednn", [](const Problem& p) {
                 dnnl_sgemm('N', 'N', p.M, p.N, p.K, 1.0f, p.A, p.K, p.B, p.N, 0.0f, p.C, p.N);
               }});
#else
  std::printf("note: oneDNN was not found at build time; benchmarking without it\n");
#endif
  (void)threads;
  return v;
}

struct Stat {
  double med_ms = 0, min_ms = 0;
};
Stat stat_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2] * 1e3, v.front() * 1e3};
}

struct Row {
  std::string shape;
  int64_t M, K, N;
  bool half;
  std::vector<Stat> st;   // per contender
};

}  // namespace

int main(int argc, char** argv) {
#ifdef DEFTNN_HAVE_OPENBLAS
  // OpenBLAS worker threads busy-wait ~2^28 cycles after each call by default; on a 2-core
  // machine they would steal the cores from the next contender. The timeout is read when the
  // library loads, so set it (2^4 cycles: sleep at once) and re-execute ourselves.
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") == nullptr) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
  }
#endif
  int threads = 2, samples = 11;
  std::string json = "bench_gemm.json", only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--samples") samples = std::atoi(next().c_str());
    else if (a == "--json") json = next();
    else if (a == "--only") only = next();
    else if (a == "--isa") deftnn::set_active_isa(deftnn::isa_from_name(next()));
    else {
      std::fprintf(stderr,
                   "usage: bench_gemm [--threads N] [--samples S] [--json PATH] [--isa NAME] "
                   "[--only SUBSTR]\n");
      return 2;
    }
  }
  omp_set_num_threads(threads);
  const auto cs = contenders(threads);
  std::printf("deftnn isa=%s kernel=%s threads=%d samples=%d\n",
              deftnn::isa_name(deftnn::active_isa()), deftnn::active_gemm_kernel(), threads,
              samples);

  // Roofs are measured before and after the GEMMs; the higher of the two is used (the machine
  // is shared, and a roof measured during someone else's burst would flatter us).
  const bool has512 = static_cast<int>(deftnn::detected_isa()) >= static_cast<int>(deftnn::Isa::avx512);
  double peak_ymm = fma_peak(threads, false);
  double peak_zmm = has512 ? fma_peak(threads, true) : 0.0;
  auto [bw_med, bw_max] = dram_read_bw(threads);
  std::printf("FMA peak (%d threads, before): ymm %.1f GFLOP/s, zmm %.1f GFLOP/s\n", threads,
              peak_ymm, peak_zmm);
  std::printf("DRAM streaming read of 512 MiB (before): median %.1f GB/s, max %.1f GB/s\n\n",
              bw_med, bw_max);

  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Row> rows;
  for (const ShapeDef& s : kShapes) {
    if (!only.empty() && std::string(s.name).find(only) == std::string::npos) continue;
    for (bool half : {false, true}) {
      const int64_t K = half ? s.K / 2 : s.K;
      // A GEMV (N == 1) is bound by reading A from DRAM, and its roof is taken at DRAM
      // bandwidth: calls rotate over copies of A that together exceed the L3 (>= 128 MiB), so
      // that an A of 32 MiB (fc7 with K halved) is not served from the 32 MiB L3 on some
      // calls and from DRAM on others (that made its median time(K)/time(K/2) read 1.0).
      const int64_t a_bytes = s.M * K * static_cast<int64_t>(sizeof(float));
      const int copies = s.N == 1 ? static_cast<int>(((int64_t{128} << 20) + a_bytes - 1) / a_bytes) : 1;
      std::vector<std::vector<float>> As(copies, std::vector<float>(s.M * K));
      std::vector<float> B(K * s.N), C(s.M * s.N);
      for (auto& A : As)
        for (auto& x : A) x = u(rng);
      for (auto& x : B) x = u(rng);
      Problem p{s.M, s.N, K, As[0].data(), B.data(), C.data()};
      int call = 0;   // rotates p.A over the copies
      auto next_a = [&] { p.A = As[call++ % copies].data(); };
      // Batch size: enough calls for ~15 ms per sample, from the slowest contender's warm-up.
      double once = 0;
      for (const auto& c : cs) {
        for (int i = 0; i < copies; ++i) {
          next_a();
          c.run(p);
        }
        next_a();
        const double t0 = now_s();
        c.run(p);
        once = std::max(once, now_s() - t0);
      }
      const int batch = std::max(1, static_cast<int>(0.015 / std::max(once, 1e-7)));
      std::vector<std::vector<double>> times(cs.size());
      for (int sample = 0; sample < samples; ++sample) {
        for (size_t c = 0; c < cs.size(); ++c) {
          // Let the previous contender's spinning worker threads go idle.
          std::this_thread::sleep_for(std::chrono::milliseconds(3));
          const double t0 = now_s();
          for (int b = 0; b < batch; ++b) {
            next_a();
            cs[c].run(p);
          }
          times[c].push_back((now_s() - t0) / batch);
        }
      }
      Row r{s.name, s.M, K, s.N, half, {}};
      for (auto& t : times) r.st.push_back(stat_of(t));
      rows.push_back(r);
    }
  }

  {
    const double y2 = fma_peak(threads, false), z2 = has512 ? fma_peak(threads, true) : 0.0;
    const auto [m2, x2] = dram_read_bw(threads);
    std::printf("FMA peak (after): ymm %.1f, zmm %.1f GFLOP/s; DRAM read (after): median %.1f, "
                "max %.1f GB/s\n",
                y2, z2, m2, x2);
    peak_ymm = std::max(peak_ymm, y2);
    peak_zmm = std::max(peak_zmm, z2);
    bw_med = std::max(bw_med, m2);
    bw_max = std::max(bw_max, x2);
    std::printf("using FMA peak %.1f GFLOP/s, DRAM read bandwidth %.1f GB/s (higher median)\n\n",
                std::max(peak_ymm, peak_zmm), bw_med);
  }
  const double peak = std::max(peak_ymm, peak_zmm);
  // One thread alone, times the team size: on this VM the both-threads loop can read lower than
  // what a GEMM sustains (the pure-FMA loop gets throttled), so report against both.
  const double peak1 = std::max(fma_peak(1, false), has512 ? fma_peak(1, true) : 0.0);
  std::printf("FMA peak of 1 thread: %.1f GFLOP/s (x%d threads = %.1f)\n\n", peak1, threads,
              peak1 * threads);
  // ---- table ----
  auto gflops = [](const Row& r, double ms) { return 2.0 * r.M * r.N * r.K / (ms * 1e-3) / 1e9; };
  std::printf("%-9s %5s %5s %5s |", "shape", "M", "K", "N");
  for (const auto& c : cs) std::printf(" %9s ms (min)  GF/s |", c.name.c_str());
  std::printf(" ours/best | t(K)/t(K/2) | DRAM roof\n");
  double log_ratio = 0;
  int n_ratio = 0;
  std::vector<double> log_gf(cs.size(), 0.0);
  std::string js = "{\n";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "  \"isa\": \"%s\", \"kernel\": \"%s\", \"threads\": %d, \"samples\": %d,\n"
                "  \"fma_peak_gflops\": {\"ymm\": %.2f, \"zmm\": %.2f, \"one_thread\": %.2f},\n"
                "  \"dram_read_gbps\": {\"median\": %.2f, \"max\": %.2f},\n  \"rows\": [\n",
                deftnn::isa_name(deftnn::active_isa()), deftnn::active_gemm_kernel(), threads,
                samples, peak_ymm, peak_zmm, peak1, bw_med, bw_max);
  js += buf;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::printf("%-9s %5lld %5lld %5lld |", (r.shape + (r.half ? "/2" : "")).c_str(),
                static_cast<long long>(r.M), static_cast<long long>(r.K),
                static_cast<long long>(r.N));
    double best_peer = 1e300;
    for (size_t c = 0; c < cs.size(); ++c) {
      std::printf(" %8.3f (%8.3f) %6.1f |", r.st[c].med_ms, r.st[c].min_ms, gflops(r, r.st[c].med_ms));
      if (c > 0) best_peer = std::min(best_peer, r.st[c].med_ms);
    }
    const double ratio = cs.size() > 1 ? best_peer / r.st[0].med_ms : 0.0;   // >1: ours faster
    double khalf = 0;
    if (!r.half && i + 1 < rows.size() && rows[i + 1].half) khalf = r.st[0].med_ms / rows[i + 1].st[0].med_ms;
    double roof = 0;
    if (r.N == 1) roof = r.st[0].med_ms / (r.M * r.K * 4.0 / (bw_med * 1e9) * 1e3);
    std::printf("  %7.2fx |", ratio);
    if (khalf > 0) std::printf(" %10.2f  |", khalf); else std::printf(" %10s  |", "");
    if (roof > 0) std::printf(" %6.2fx", roof);
    std::printf("\n");
    if (!r.half) {
      if (cs.size() > 1) {
        log_ratio += std::log(ratio);
        ++n_ratio;
      }
      for (size_t c = 0; c < cs.size(); ++c) log_gf[c] += std::log(gflops(r, r.st[c].med_ms));
    }
    js += "    {\"shape\": \"" + r.shape + "\", \"M\": " + std::to_string(r.M) + ", \"K\": " +
          std::to_string(r.K) + ", \"N\": " + std::to_string(r.N) +
          ", \"k_halved\": " + (r.half ? "true" : "false");
    for (size_t c = 0; c < cs.size(); ++c) {
      std::snprintf(buf, sizeof buf, ", \"%s\": {\"median_ms\": %.5f, \"min_ms\": %.5f, \"gflops\": %.2f}",
                    cs[c].name.c_str(), r.st[c].med_ms, r.st[c].min_ms, gflops(r, r.st[c].med_ms));
      js += buf;
    }
    std::snprintf(buf, sizeof buf, ", \"ours_speedup_vs_best_peer\": %.4f", ratio);
    js += buf;
    if (khalf > 0) {
      std::snprintf(buf, sizeof buf, ", \"time_k_over_time_k_half\": %.4f", khalf);
      js += buf;
    }
    if (roof > 0) {
      std::snprintf(buf, sizeof buf, ", \"dram_roof_ratio\": %.4f", roof);
      js += buf;
    }
    js += std::string("}") + (i + 1 < rows.size() ? "," : "") + "\n";
  }
  const int nfull = static_cast<int>(std::count_if(rows.begin(), rows.end(), [](const Row& r) { return !r.half; }));
  std::printf("\ngeomean over %d full-K shapes: ", nfull);
  js += "  ],\n  \"geomean_gflops\": {";
  for (size_t c = 0; c < cs.size(); ++c) {
    const double g = std::exp(log_gf[c] / std::max(1, nfull));
    std::printf("%s %.1f GF/s  ", cs[c].name.c_str(), g);
    std::snprintf(buf, sizeof buf, "%s\"%s\": %.2f", c ? ", " : "", cs[c].name.c_str(), g);
    js += buf;
  }
  const double gratio = n_ratio ? std::exp(log_ratio / n_ratio) : 0.0;
  std::printf("| ours vs best peer (time ratio, >1 = ours faster): %.3fx\n", gratio);
  std::snprintf(buf, sizeof buf, "},\n  \"geomean_speedup_vs_best_peer\": %.4f", gratio);
  js += buf;
  for (const Row& r : rows)
    if (r.shape == "sq1024" && !r.half) {
      const double pct = 100.0 * gflops(r, r.st[0].med_ms) / peak;
      const double pct1 = 100.0 * gflops(r, r.st[0].med_ms) / (peak1 * threads);
      std::printf("sq1024: %.1f GF/s = %.1f%% of measured %d-thread FMA peak %.1f GF/s, %.1f%% of "
                  "%d x 1-thread peak %.1f GF/s\n",
                  gflops(r, r.st[0].med_ms), pct, threads, peak, pct1, threads, peak1 * threads);
      std::snprintf(buf, sizeof buf,
                    ",\n  \"sq1024_pct_of_fma_peak\": %.2f, \"sq1024_pct_of_threads_x_1thread_peak\": %.2f",
                    pct, pct1);
      js += buf;
    }
  js += "\n}\n";
  if (FILE* f = std::fopen(json.c_str(), "w")) {
    std::fputs(js.c_str(), f);
    std::fclose(f);
    std::printf("wrote %s\n", json.c_str());
  } else {
    std::fprintf(stderr, "cannot write %s\n", json.c_str());
    return 1;
  }
  return 0;
}
