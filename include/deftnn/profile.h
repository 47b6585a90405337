// deftnn: timing a model's forward pass per layer and end to end (used by `deftnn bench`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "deftnn/model.h"

namespace deftnn {

struct LayerTime {
  std::string name, type;
  Shape output;
  int64_t flops = 0;
  double median_ms = 0, min_ms = 0;
};

struct ModelProfile {
  int64_t batch = 0;
  int threads = 0;
  int iterations = 0;
  std::vector<LayerTime> layers;
  double median_ms = 0, min_ms = 0;   // whole forward
  int64_t flops = 0;
  int64_t activation_bytes = 0;       // Model::activation_bytes after the timed forwards
};

// Runs `warmup` untimed then `iterations` timed forward passes on a deterministic random input
// and reports medians and minimums per layer and end to end.
ModelProfile profile_model(Model& model, int64_t batch, int iterations = 20, int warmup = 3);

// The same for several models with one input shape (e.g. one model under several weight
// formats), measured side by side: each round runs every model once, the first one rotating,
// so slow drifts of the machine hit them all alike. One profile per model, in order.
std::vector<ModelProfile> profile_models(const std::vector<Model*>& models, int64_t batch,
                                         int iterations = 20, int warmup = 3);

double median(std::vector<double> v);

// A fixed-width table of a profile (one row per layer, then the total).
std::string format_profile(const ModelProfile& p);

}  // namespace deftnn
