// bench_cuda_net: the paper's end-to-end comparison (Fig. 9, 11, 13) for whole networks on the
// CUDA backend (cuda::Session, one CUDA graph per forward pass), side by side in one run: dense
// fp32, data fission per format (weights and activations 16-bit; Deft-8 fully connected weights
// with 16-bit convolutions, the paper's Deft-8H mix), the off-chip packing baseline, synapse
// vector elimination at 50% retained on conv2..fc7 (CaffeNet) or every GEMM layer but the first
// and last, and both together. Random weights (timing does not depend on them). Prints a table
// and the fp32 per-layer times, writes JSON.
//
// Usage: bench_cuda_net [--nets caffenet,lenet,cifarnet] [--batch 1,32] [--reps 50] [--json FILE]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "deftnn/cuda.h"
#include "deftnn/error.h"
#include "deftnn/model.h"
#include "deftnn/optimize.h"
#include "deftnn/zoo.h"

using namespace deftnn;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0; p < s.size();) {
    const size_t q = s.find(',', p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    p = q == std::string::npos ? s.size() : q + 1;
  }
  return out;
}


struct Config {
  std::string name;
  bool sve;
  cuda::SessionOptions opt;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> nets = {"caffenet", "lenet", "cifarnet"};
  std::vector<int64_t> batches = {1, 32};
  int reps = 50;
  std::string json = "bench_cuda_net.json";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "bench_cuda_net: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--nets") nets = split(next());
    else if (a == "--batch") { batches.clear(); for (auto& b : split(next())) batches.push_back(std::atoll(b.c_str())); }
    else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--json") json = next();
    else { std::fprintf(stderr, "bench_cuda_net: unknown option %s\n", a.c_str()); return 2; }
  }
  if (!cuda::available()) { std::fprintf(stderr, "bench_cuda_net: no CUDA device\n"); return 1; }
  std::printf("device: %s; median of %d graph launches per figure\n", cuda::device_name().c_str(), reps);

  auto cfg = [](const char* n, bool sve, Format conv, Format fc, cuda::Staging st) {
    Config c{n, sve, {}};
    c.opt.conv_format = conv;
    c.opt.fc_format = fc;
    c.opt.staging = st;
    return c;
  };
  using cuda::Staging;
  const std::vector<Config> configs = {
      cfg("fp32", false, Format::f32, Format::f32, Staging::near_weights),
      cfg("half", false, Format::half, Format::half, Staging::near_weights),
      cfg("deft16", false, Format::deft16, Format::deft16, Staging::near_weights),
      cfg("deft16q", false, Format::deft16q, Format::deft16q, Staging::near_weights),
      cfg("deft16q_both_near", false, Format::deft16q, Format::deft16q, Staging::near_compute),
      cfg("deft16q_offchip", false, Format::deft16q, Format::deft16q, Staging::off_chip),
      cfg("deft8fc_deft16q", false, Format::deft16q, Format::deft8_e4, Staging::near_weights),
      cfg("deft8fc_deft16q_offchip", false, Format::deft16q, Format::deft8_e4, Staging::off_chip),
      cfg("half_tc", false, Format::half, Format::half, Staging::tensor_core),
      cfg("deft16_tc", false, Format::deft16, Format::deft16, Staging::tensor_core),
      cfg("deft8fc_deft16_tc", false, Format::deft16, Format::deft8_e4, Staging::tensor_core),
      cfg("sve50", true, Format::f32, Format::f32, Staging::near_weights),
      cfg("sve50_deft16_tc", true, Format::deft16, Format::deft16, Staging::tensor_core),
      cfg("sve50_deft8fc_deft16_tc", true, Format::deft16, Format::deft8_e4, Staging::tensor_core),
      cfg("sve50_deft16q", true, Format::deft16q, Format::deft16q, Staging::near_weights),
      cfg("sve50_deft8fc_deft16q", true, Format::deft16q, Format::deft8_e4, Staging::near_weights),
  };
  struct Row { std::string net, config; int64_t batch; double ms, speedup; };
  std::vector<Row> rows;
  for (const std::string& net : nets) {
    Model dense = build_zoo(net);
    dense.init_params(1);
    Model elim = build_zoo(net);
    elim.init_params(1);
    std::vector<std::string> gemm;
    for (const Node& n : elim.nodes())
      if (n.layer->type() == "conv" || n.layer->type() == "fc") gemm.push_back(n.name);
    // Not the first layer (few synapse vectors, the image itself) nor the classifier.
    for (size_t i = 1; i + 1 < gemm.size(); ++i) eliminate_evenly(elim, gemm[i]);
    for (int64_t batch : batches) {
      double base = 0;
      for (const Config& c : configs) {
        cuda::Session s(c.sve ? elim : dense, batch, c.opt);
        const double ms = s.time_ms(reps);
        if (c.name == "fp32") {
          base = ms;
          std::printf("\n%s batch %lld, fp32 per step (launched one by one):\n", net.c_str(), static_cast<long long>(batch));
          for (const auto& [name, t] : s.layer_ms(std::max(5, reps / 5))) std::printf("  %-10s %8.4f ms\n", name.c_str(), t);
        }
        rows.push_back({net, c.name, batch, ms, base / ms});
      }
    }
  }
  std::printf("\n%-9s %5s %-26s %10s %8s\n", "net", "batch", "config", "ms", "vs fp32");
  for (const Row& r : rows)
    std::printf("%-9s %5lld %-26s %10.4f %7.2fx\n", r.net.c_str(), static_cast<long long>(r.batch), r.config.c_str(), r.ms, r.speedup);
  const std::string tmp = json + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) { std::fprintf(stderr, "bench_cuda_net: cannot write %s\n", json.c_str()); return 1; }
  std::fprintf(f, "{\"device\": \"%s\", \"reps\": %d, \"rows\": [\n", cuda::device_name().c_str(), reps);
  for (size_t i = 0; i < rows.size(); ++i)
    std::fprintf(f, "  {\"net\": \"%s\", \"batch\": %lld, \"config\": \"%s\", \"ms\": %.6f, \"speedup_vs_fp32\": %.4f}%s\n",
                 rows[i].net.c_str(), static_cast<long long>(rows[i].batch), rows[i].config.c_str(), rows[i].ms,
                 rows[i].speedup, i + 1 < rows.size() ? "," : "");
  std::fprintf(f, "]}\n");
  std::fclose(f);
  std::rename(tmp.c_str(), json.c_str());
  std::printf("wrote %s\n", json.c_str());
  return 0;
}
