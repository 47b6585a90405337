// Synapse search at CaffeNet fc6 size: a random M x K weight (default 4096 x 9216), timing the
// correlation (Eq. 6, one K x K sgemm) and the incremental greedy search (Eq. 7) at several
// thresholds. Prints a table and writes JSON.
//   bench_sve_search [M] [K] [json path]   (defaults 4096 9216 bench_sve_search.json)
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "deftnn/gemm.h"
#include "deftnn/rng.h"
#include "deftnn/sve.h"

using namespace deftnn;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t M = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t K = argc > 2 ? std::atoll(argv[2]) : 9216;
  const std::string json = argc > 3 ? argv[3] : "bench_sve_search.json";
  if (M < 1 || K < 1) {
    std::fprintf(stderr, "usage: bench_sve_search [M] [K] [json path]\n");
    return 2;
  }
  std::vector<float> w(static_cast<size_t>(M * K));
  Rng rng(2017);
  for (auto& v : w) v = static_cast<float>(rng.normal());

  std::printf("synapse search, random %lld x %lld weight, %d threads, gemm kernel %s\n",
              static_cast<long long>(M), static_cast<long long>(K), omp_get_max_threads(),
              active_gemm_kernel());
  auto t0 = std::chrono::steady_clock::now();
  const Tensor rho = synapse_correlation(w.data(), M, K, K);
  const double t_corr = seconds_since(t0);
  std::printf("%-28s %10.3f s   (%.1f GFLOP/s in the K x K x M gemm)\n", "correlation", t_corr,
              2.0 * static_cast<double>(K) * K * M / t_corr * 1e-9);

  struct Row { double alpha; bool absolute; double seconds; int64_t retained; };
  std::vector<Row> rows;
  for (const double alpha : {1.5, 0.9, 0.05, 0.03, 0.0}) {
    for (const bool absolute : {false, true}) {
      if (absolute && alpha > 1.0) continue;
      SynapseSearchOptions o;
      o.correlation_threshold = alpha;
      o.absolute = absolute;
      t0 = std::chrono::steady_clock::now();
      const auto s = synapse_search(rho, o);
      const double t = seconds_since(t0);
      rows.push_back({alpha, absolute, t, s.retained_count()});
      char name[64];
      std::snprintf(name, sizeof name, "search alpha=%.2f %s", alpha, absolute ? "|rho|" : "rho");
      std::printf("%-28s %10.3f s   retained %lld of %lld\n", name, t,
                  static_cast<long long>(s.retained_count()), static_cast<long long>(K));
    }
  }

  if (FILE* f = std::fopen(json.c_str(), "w")) {
    std::fprintf(f, "{\n  \"M\": %lld, \"K\": %lld, \"threads\": %d, \"gemm_kernel\": \"%s\",\n",
                 static_cast<long long>(M), static_cast<long long>(K), omp_get_max_threads(),
                 active_gemm_kernel());
    std::fprintf(f, "  \"correlation_seconds\": %.6f,\n  \"search\": [\n", t_corr);
    for (size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f,
                   "    {\"alpha\": %.4f, \"absolute\": %s, \"seconds\": %.6f, \"retained\": %lld}%s\n",
                   rows[i].alpha, rows[i].absolute ? "true" : "false", rows[i].seconds,
                   static_cast<long long>(rows[i].retained), i + 1 < rows.size() ? "," : "");
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", json.c_str());
  } else {
    std::fprintf(stderr, "cannot write %s\n", json.c_str());
    return 1;
  }
  return 0;
}
