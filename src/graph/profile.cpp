#include "deftnn/profile.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "deftnn/error.h"

namespace deftnn {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

ModelProfile profile_model(Model& model, int64_t batch, int iterations, int warmup) {
  return profile_models({&model}, batch, iterations, warmup)[0];
}

std::vector<ModelProfile> profile_models(const std::vector<Model*>& models, int64_t batch,
                                         int iterations, int warmup) {
  check(batch > 0, "bench: batch size must be positive");
  check(iterations > 0, "bench: iterations must be positive");
  check(!models.empty(), "bench: no model to profile");
  const size_t nm = models.size();
  for (Model* m : models)
    check(m->input_shape() == models[0]->input_shape(),
          "bench: the models compared side by side need the same input shape");
  Shape s{batch};
  s.insert(s.end(), models[0]->input_shape().begin(), models[0]->input_shape().end());
  Tensor x(s);
  Rng rng(42);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(0.0f, 1.0f);
  std::vector<std::vector<std::vector<double>>> per(nm);
  std::vector<std::vector<double>> total(nm);
  // Profiling is inference: the weights are constants for its duration (see Model::freeze).
  std::vector<bool> was_frozen(nm);
  for (size_t m = 0; m < nm; ++m) {
    models[m]->set_timing(true);
    was_frozen[m] = models[m]->frozen();
    models[m]->freeze(true);
    per[m].resize(models[m]->nodes().size());
  }
  // Round by round; the model that goes first rotates, so none always follows the same one.
  for (int it = 0; it < warmup + iterations; ++it)
    for (size_t j = 0; j < nm; ++j) {
      const size_t m = (j + static_cast<size_t>(it)) % nm;
      Model& model = *models[m];
      auto t0 = std::chrono::steady_clock::now();
      model.forward(x, false);
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (it < warmup) continue;
      total[m].push_back(ms);
      for (size_t i = 0; i < model.nodes().size(); ++i)
        per[m][i].push_back(model.timings()[i].forward_ms);
    }
  std::vector<ModelProfile> out;
  for (size_t m = 0; m < nm; ++m) {
    Model& model = *models[m];
    model.set_timing(false);
    const int64_t act_bytes = model.activation_bytes();
    model.freeze(was_frozen[m]);
    std::vector<Shape> shapes = model.value_shapes(batch);
    const auto& nodes = model.nodes();
    ModelProfile p;
    p.batch = batch;
    p.threads = omp_get_max_threads();
    p.iterations = iterations;
    p.activation_bytes = act_bytes;
    for (size_t i = 0; i < nodes.size(); ++i) {
      LayerTime lt;
      lt.name = nodes[i].name;
      lt.type = nodes[i].layer->type();
      lt.output = shapes[i + 1];
      std::vector<Shape> in;
      for (int v : nodes[i].inputs) in.push_back(shapes[v]);
      lt.flops = nodes[i].layer->flops(in, shapes[i + 1]);
      lt.median_ms = median(per[m][i]);
      lt.min_ms = *std::min_element(per[m][i].begin(), per[m][i].end());
      p.flops += lt.flops;
      p.layers.push_back(lt);
    }
    p.median_ms = median(total[m]);
    p.min_ms = *std::min_element(total[m].begin(), total[m].end());
    out.push_back(std::move(p));
  }
  return out;
}

std::string format_profile(const ModelProfile& p) {
  std::ostringstream os;
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %-10s %-20s %10s %10s %9s %7s\n", "layer", "type",
                "output", "median ms", "min ms", "GFLOP/s", "share");
  os << line;
  double sum = 0;
  for (const LayerTime& l : p.layers) sum += l.median_ms;
  for (const LayerTime& l : p.layers) {
    double gf = l.median_ms > 0 ? l.flops / (l.median_ms * 1e6) : 0;
    std::snprintf(line, sizeof line, "%-10s %-10s %-20s %10.3f %10.3f %9.1f %6.1f%%\n",
                  printable(l.name).c_str(), l.type.c_str(), shape_str(l.output).c_str(), l.median_ms,
                  l.min_ms, gf, sum > 0 ? 100.0 * l.median_ms / sum : 0.0);
    os << line;
  }
  double gf = p.median_ms > 0 ? p.flops / (p.median_ms * 1e6) : 0;
  std::snprintf(line, sizeof line, "%-10s %-10s %-20s %10.3f %10.3f %9.1f\n", "total", "",
                ("batch " + std::to_string(p.batch) + ", " + std::to_string(p.threads) + " thr").c_str(),
                p.median_ms, p.min_ms, gf);
  os << line;
  if (p.activation_bytes > 0) {
    std::snprintf(line, sizeof line, "activations: %.1f MiB (the model input excluded)\n",
                  p.activation_bytes / 1048576.0);
    os << line;
  }
  return os.str();
}

}  // namespace deftnn
