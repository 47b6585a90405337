// The paper's Fig. 9 / Fig. 13 comparison: synapse vector elimination alone, data fission alone,
// and both, against the dense fp32 model, measured side by side in one run (profile_models
// interleaves the four models forward by forward, so the shared machine's load hits them alike).
//
//   bench_sve_fission DENSE ELIMINATED [--format SPEC] [--batch B ...] [--iters N] [--json PATH]
//
// DENSE and ELIMINATED are model files (.deft/.onnx), e.g. an optimiser's OPT/base.deft and the
// configuration `deftnn frontier OPT ... -o chosen.deft` wrote; SPEC is a format spec as
// `deftnn bench --formats` takes ("bf16", "conv:bf16+fc:deft8_e4", ...). With --data, top-1 on
// the Fashion-MNIST test set is reported for each variant too.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deftnn/data.h"
#include "deftnn/error.h"
#include "deftnn/onnx.h"
#include "deftnn/precision.h"
#include "deftnn/profile.h"
#include "deftnn/train.h"

using namespace deftnn;

int main(int argc, char** argv) {
  try {
    std::vector<std::string> pos;
    std::string spec = "bf16", json_path, data_dir;
    std::vector<int64_t> batches;
    int iters = 30;
    bool with_data = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--format") spec = next();
      else if (a == "--batch") {
        while (i + 1 < argc && argv[i + 1][0] != '-') batches.push_back(std::stoll(argv[++i]));
      } else if (a == "--iters") iters = std::stoi(next());
      else if (a == "--json") json_path = next();
      else if (a == "--data") {
        with_data = true;
        if (i + 1 < argc && argv[i + 1][0] != '-') data_dir = argv[++i];
      } else if (a == "-h" || a == "--help") {
        std::printf("usage: bench_sve_fission DENSE ELIMINATED [--format SPEC] [--batch B ...] "
                    "[--iters N] [--data [DIR]] [--json PATH]\n");
        return 0;
      } else if (!a.empty() && a[0] == '-') throw Error("unknown option '" + a + "'");
      else pos.push_back(a);
    }
    if (pos.size() != 2) throw Error("expected two model files: DENSE ELIMINATED (see --help)");
    if (batches.empty()) batches = {1, 64};
    const FormatSpec fs = parse_format_spec(spec);
    const char* names[4] = {"dense f32", "fission", "elimination", "both"};
    std::vector<Model> models;
    for (int v = 0; v < 4; ++v) {
      models.push_back(load_any_model(pos[v / 2]));
      if (v % 2) apply_format_spec(models.back(), fs);
    }
    check(models[0].input_shape() == models[2].input_shape(),
          "the two models take different inputs: " + shape_str(models[0].input_shape()) + " and " +
              shape_str(models[2].input_shape()));
    std::vector<Model*> ptrs;
    for (Model& m : models) ptrs.push_back(&m);
    nlohmann::json runs = nlohmann::json::array();
    std::vector<double> top1(4, -1);
    if (with_data) {
      Dataset te = load_fashion_mnist(data_dir, false);
      const int64_t side = models[0].input_shape().back();
      if (side > te.images.dim(3)) te = pad_images(te, static_cast<int>((side - te.images.dim(3)) / 2));
      for (int v = 0; v < 4; ++v) top1[v] = evaluate(models[v], te, 256, false).top1;
    }
    for (const int64_t b : batches) {
      const std::vector<ModelProfile> ps = profile_models(ptrs, b, iters, 3);
      std::printf("%s vs %s, format %s, batch %lld, %d threads, %d interleaved rounds:\n",
                  pos[0].c_str(), pos[1].c_str(), spec.c_str(), static_cast<long long>(b),
                  ps[0].threads, iters);
      std::printf("%-12s %10s %10s %9s %8s\n", "variant", "median ms", "min ms", "speedup", "top-1 %");
      nlohmann::json rows = nlohmann::json::array();
      for (int v = 0; v < 4; ++v) {
        const double s = ps[0].median_ms / ps[v].median_ms;
        std::printf("%-12s %10.3f %10.3f %8.2fx %8s\n", names[v], ps[v].median_ms, ps[v].min_ms, s,
                    top1[v] < 0 ? "-" : std::to_string(100 * top1[v]).substr(0, 5).c_str());
        rows.push_back({{"variant", names[v]}, {"median_ms", ps[v].median_ms},
                        {"min_ms", ps[v].min_ms}, {"speedup", s}, {"top1", top1[v]}});
      }
      std::printf("\n");
      runs.push_back({{"batch", b}, {"threads", ps[0].threads}, {"variants", rows}});
    }
    if (!json_path.empty()) {
      const std::string tmp = json_path + ".tmp";
      std::ofstream(tmp) << nlohmann::json{{"dense", pos[0]}, {"eliminated", pos[1]},
                                           {"format", spec}, {"runs", runs}}.dump(2) << "\n";
      if (std::rename(tmp.c_str(), json_path.c_str()) != 0) throw Error("cannot write '" + json_path + "'");
      std::printf("wrote %s\n", json_path.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sve_fission: %s\n", e.what());
    return 1;
  }
}
