// Issue 3, "beyond the paper": the paper's synapse vector elimination (weight-column correlation,
// uniform K/(K-D) scale) against the calibration-driven variants of deftnn/sve_calibration.h, on
// a trained model and the Fashion-MNIST test set, BEFORE any fine-tuning (the part of the
// accuracy each choice keeps on its own):
//   paper      weight correlation (Eq. 6-7), uniform scale (Eq. 5)
//   paper+LS   the same retained set, least-squares refit of the kept columns
//   act        correlation of the layer's inputs over calibration samples, uniform scale, with
//              the threshold bisected so it keeps the same count K' as `paper`
//   act+LS     that set, refit
//   bench_sve_refit MODEL [--layers a,b] [--thresholds 0.5,0.4,0.3] [--calib 2000] [--data DIR]
//                   [--json PATH]
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deftnn/data.h"
#include "deftnn/error.h"
#include "deftnn/onnx.h"
#include "deftnn/optimize.h"
#include "deftnn/sve_calibration.h"
#include "deftnn/train.h"

using namespace deftnn;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) out.push_back(t);
  return out;
}

// Greedy search on rho at alpha; plan of the retained flags.
SynapsePlan search_plan(const Tensor& rho, double alpha) {
  SynapseSearchOptions o;
  o.correlation_threshold = alpha;
  o.align = 8;
  return plan_elimination(synapse_search(rho, o).retained);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model_path, layers_arg, thr = "0.5,0.4,0.3,0.2", data_dir, json_path;
    int64_t calib_n = 2000;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--layers") layers_arg = next();
      else if (a == "--thresholds") thr = next();
      else if (a == "--calib") calib_n = std::stoll(next());
      else if (a == "--data") data_dir = next();
      else if (a == "--json") json_path = next();
      else if (a == "-h" || a == "--help") {
        std::printf("usage: bench_sve_refit MODEL [--layers a,b] [--thresholds 0.5,0.4] [--calib N] "
                    "[--data DIR] [--json PATH]\n");
        return 0;
      } else if (!a.empty() && a[0] == '-') throw Error("unknown option '" + a + "'");
      else model_path = a;
    }
    check(!model_path.empty(), "expected a model file (see --help)");
    Model base = load_any_model(model_path);
    const int64_t side = base.input_shape().back();
    Dataset test = load_fashion_mnist(data_dir, false);
    Dataset train = load_fashion_mnist(data_dir, true, calib_n);
    if (side > test.images.dim(3)) {
      const int pad = static_cast<int>((side - test.images.dim(3)) / 2);
      test = pad_images(test, pad);
      train = pad_images(train, pad);
    }
    const double base_acc = evaluate(base, test, 256, false).top1;
    std::vector<std::string> layers = layers_arg.empty() ? default_elimination_layers(base) : split(layers_arg);
    std::printf("%s: fp32 top-1 %.2f%% on %s; calibration: the first %lld training images; no fine-tuning\n",
                model_path.c_str(), 100 * base_acc, test.name.c_str(), static_cast<long long>(train.size()));
    std::printf("%-8s %6s %6s %6s | %8s %8s %8s %8s  (top-1 %%)\n", "layer", "alpha", "K", "K'",
                "paper", "paper+LS", "act", "act+LS");
    nlohmann::json rows = nlohmann::json::array();
    for (const std::string& layer : layers) {
      const int idx = base.find(layer);
      check(idx >= 0, "no layer '" + layer + "'");
      const Tensor W = base.nodes()[idx].layer->param("weight")->value.clone();
      const int64_t M = W.dim(0), K = W.numel() / M;
      const Tensor X = layer_calibration_inputs(base, layer, train.images, 20000);
      const int64_t S = X.dim(1);
      Tensor Xt({S, K});
      for (int64_t k = 0; k < K; ++k)
        for (int64_t s = 0; s < S; ++s) Xt[s * K + k] = X[k * S + s];
      const Tensor rho_w = synapse_correlation(W.data(), M, K, K);
      const Tensor rho_a = synapse_correlation(Xt.data(), S, K, K);
      for (const std::string& ts : split(thr)) {
        const double alpha = std::stod(ts);
        const SynapsePlan pw = search_plan(rho_w, alpha);
        // Activation plan with the same kept count: bisect its threshold.
        double lo = -1.0, hi = 1.0 + 1e-6;
        SynapsePlan pa = search_plan(rho_a, hi);
        for (int it = 0; it < 30; ++it) {
          const double mid = 0.5 * (lo + hi);
          SynapsePlan p = search_plan(rho_a, mid);
          if (p.kept() >= pw.kept()) {
            pa = p;
            hi = mid;
          } else {
            lo = mid;
          }
        }
        auto acc_with = [&](const SynapsePlan& p, bool ls) {
          Model m = load_any_model(model_path);
          const Tensor w = ls ? refit_least_squares(W.data(), M, K, K, p, X, 1e-4)
                              : truncate_weights(W.data(), M, K, K, p);
          set_layer_elimination(m, layer, std::vector<int64_t>(p.retained.begin(), p.retained.end()), w);
          return evaluate(m, test, 256, false).top1;
        };
        const double a1 = acc_with(pw, false), a2 = acc_with(pw, true);
        const double a3 = acc_with(pa, false), a4 = acc_with(pa, true);
        std::printf("%-8s %6.2f %6lld %6lld | %8.2f %8.2f %8.2f %8.2f   (act K' %lld)\n", layer.c_str(),
                    alpha, static_cast<long long>(K), static_cast<long long>(pw.kept()), 100 * a1,
                    100 * a2, 100 * a3, 100 * a4, static_cast<long long>(pa.kept()));
        std::fflush(stdout);
        rows.push_back({{"layer", layer}, {"alpha", alpha}, {"K", K}, {"kept", pw.kept()},
                        {"kept_act", pa.kept()}, {"paper", a1}, {"paper_ls", a2}, {"act", a3},
                        {"act_ls", a4}});
      }
    }
    if (!json_path.empty()) {
      const std::string tmp = json_path + ".tmp";
      std::ofstream(tmp) << nlohmann::json{{"model", model_path}, {"base_top1", base_acc},
                                           {"calibration_images", train.size()}, {"rows", rows}}.dump(2)
                         << "\n";
      if (std::rename(tmp.c_str(), json_path.c_str()) != 0) throw Error("cannot write '" + json_path + "'");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sve_refit: %s\n", e.what());
    return 1;
  }
}
