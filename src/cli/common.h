// Helpers shared by the deftnn command's files: opening models, data options, JSON output.
#pragma once
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/io.h"
#include "deftnn/model.h"
#include "deftnn/profile.h"
#include "deftnn/train.h"
#include "deftnn/zoo.h"

namespace deftnn::cli {

using json = nlohmann::json;

// A subcommand defined in another file: its CLI11 app and what to run when it was given.
struct Registry {
  std::vector<std::pair<CLI::App*, std::function<void()>>> commands;
  void add(CLI::App* cmd, std::function<void()> run) { commands.emplace_back(cmd, std::move(run)); }
};

// Defined in cmd_sve.cpp (optimize, frontier) and cmd_onnx.cpp (run, convert).
void register_sve_commands(CLI::App& app, Registry& registry);
void register_onnx_commands(CLI::App& app, Registry& registry);
void register_format_commands(CLI::App& app, Registry& registry);   // cmd_formats.cpp

// `deftnn bench --device cuda` (cmd_cuda.cpp).
struct CudaBenchArgs {
  std::string model, input, json;
  int classes = 0;
  std::vector<int64_t> batches{1};
  int iters = 50;
  std::string conv_format = "f32", fc_format = "f32", staging = "nearw";
};
void run_cuda_bench(const CudaBenchArgs& a);
struct DataOptions;
// `deftnn eval --device cuda`: top-1 on the Fashion-MNIST test set through cuda::Session.
void run_cuda_eval(const CudaBenchArgs& a, const DataOptions& data, int64_t batch);

inline bool is_zoo_name(const std::string& s) {
  for (const auto& n : zoo_names())
    if (n == s) return true;
  return false;
}

// MODEL arguments are a model file or a zoo network name (fresh, randomly initialised weights).
inline Model open_model(const std::string& spec, const Shape& input, int classes, uint64_t seed = 1) {
  if (is_zoo_name(spec)) {
    Model m = build_zoo(spec, ZooOptions{input, classes});
    m.init_params(seed);
    return m;
  }
  if (access(spec.c_str(), F_OK) != 0)
    throw Error("'" + spec + "' is neither a model file nor a network name (known networks: lenet, "
                "cifarnet, caffenet, flickr_style, flowers102, sos)");
  return load_model(spec);
}

inline Shape parse_shape(const std::string& s) {
  Shape r;
  if (s.empty()) return r;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find_first_of("x,", pos);
    std::string tok = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    try {
      size_t used = 0;
      long long v = std::stoll(tok, &used);
      if (used != tok.size() || v <= 0 || v > (1 << 20)) throw std::invalid_argument(tok);
      r.push_back(v);
    } catch (const std::exception&) {
      throw Error("--input '" + s + "': expected C,H,W with positive integers, e.g. 1,32,32");
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  check(r.size() == 3, "--input '" + s + "': expected three numbers C,H,W");
  return r;
}

struct DataOptions {
  std::string dir;
  int64_t limit = -1;
  int pad = -1;   // -1: automatic (pad 28x28 to 32x32 for networks that need 32x32)
};

inline void add_data_options(CLI::App* c, DataOptions& d) {
  c->add_option("--data", d.dir, "Fashion-MNIST directory (default: $DEFTNN_DATA or the Debian "
                                 "package's /usr/share/datasets/fashion-mnist)");
  c->add_option("--limit", d.limit, "use only the first N samples of each set")->check(CLI::PositiveNumber);
  c->add_option("--pad", d.pad, "zero-pad images by P pixels per side (default: 2 for cifarnet, else 0)")
      ->check(CLI::Range(0, 64));
}

inline Dataset load_data(const DataOptions& o, bool train, const std::string& net) {
  Dataset d = load_fashion_mnist(o.dir, train, o.limit);
  int pad = o.pad >= 0 ? o.pad : (net == "cifarnet" ? 2 : 0);
  if (pad > 0) d = pad_images(d, pad);
  return d;
}

// Fashion-MNIST for a model: its 28x28 images padded to the model's input size (cifarnet: 32x32)
// unless --pad says otherwise.
inline Dataset data_for(const Model& m, const DataOptions& o, bool train, int64_t limit) {
  Dataset d = load_fashion_mnist(o.dir, train, limit);
  int pad = o.pad;
  if (pad < 0) {
    const Shape& in = m.input_shape();
    pad = (in.size() == 3 && in[1] > d.images.dim(2)) ? static_cast<int>((in[1] - d.images.dim(2)) / 2) : 0;
  }
  if (pad > 0) d = pad_images(d, pad);
  return d;
}

// Where model selection (optimize, refine) validates: images held out of the training set, or
// the first N of the test set (the old way: the selection then sees those test images).
struct ValidationArgs {
  int64_t from_train = 0;   // --val-from-train N
  int64_t from_test = 0;    // --val-from-test N (alias --val)
  uint64_t seed = kValidationSplitSeed;
  bool seed_given = false;
};

inline void add_validation_options(CLI::App* c, ValidationArgs& v, bool selection) {
  if (!selection) {
    c->add_option("--val-from-train", v.from_train,
                  "hold out N training images (never trained on; recorded in the model file so that "
                  "optimize/refine validate on them)")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  } else {
    c->add_option("--val-from-train", v.from_train,
                  "validate on N images held out of the training set and not fine-tuned on (default: "
                  "the split the model was trained with, when its file records one)")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
    c->add_option("--val-from-test,--val", v.from_test,
                  "validate on the first N test images instead (the old way; the selection then "
                  "sees them; the default, 5000, when the model records no split)")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  }
  c->add_option_function<uint64_t>("--split-seed", [&v](const uint64_t& s) { v.seed = s; v.seed_given = true; },
                                   "seed of the held-out draw (default: the model's, else " +
                                       std::to_string(kValidationSplitSeed) + ")");
}

struct SelectionData {
  Dataset train, validation;
  HeldOut held_out;          // empty when validating on test images
};

// The training set, limited to the first N samples (--limit) after the split, and the
// validation set for selecting among versions of model m; `recorded` is the split m was trained
// with (empty if none). Validating on more or other images than were held out from m's training
// is an error, since m was trained on them.
inline SelectionData selection_data(const Model& m, const DataOptions& o, const ValidationArgs& v,
                                    const HeldOut& recorded) {
  if (v.from_train > 0 && v.from_test > 0)
    throw Error("--val-from-train and --val-from-test: give one validation set, not both");
  SelectionData r;
  int64_t from_test = v.from_test;
  if (from_test == 0 && v.from_train == 0 && recorded.empty()) {
    from_test = 5000;
    std::printf("note: the model records no held-out training images (train it with --val-from-train); "
                "validating on the first %lld test images, so the selection sees them\n",
                static_cast<long long>(from_test));
  }
  if (from_test > 0) {
    r.train = data_for(m, o, true, o.limit);
    r.validation = data_for(m, o, false, from_test);
    return r;
  }
  HeldOut h = recorded;
  if (v.from_train > 0) {
    h.held_out = v.from_train;
    if (v.seed_given) h.seed = v.seed;
    if (recorded.empty()) {
      h.total = 0;   // the whole training set, below
      std::printf("warning: the model records no held-out training images: it may have been trained on "
                  "the %lld validation images\n", static_cast<long long>(v.from_train));
    } else if (h.seed != recorded.seed || h.held_out > recorded.held_out) {
      throw Error("--val-from-train " + std::to_string(h.held_out) + " (seed " + std::to_string(h.seed) +
                  "): the model was trained with " + recorded.describe() +
                  " held out, so other images would be ones it was trained on; use at most " +
                  std::to_string(recorded.held_out) + " with seed " + std::to_string(recorded.seed) +
                  ", or --val-from-test");
    }
  } else if (v.seed_given && v.seed != recorded.seed) {
    throw Error("--split-seed " + std::to_string(v.seed) + ": the model was trained with " +
                recorded.describe() + " held out");
  }
  Dataset full = data_for(m, o, true, h.total > 0 ? h.total : -1);
  if (h.total == 0) h.total = full.size();
  check(full.size() == h.total, "the model's held-out split is of the first " + std::to_string(h.total) +
                                    " training images, but the data has only " + std::to_string(full.size()));
  TrainValidation tv = apply_validation_split(full, make_validation_split(h));
  r.train = std::move(tv.train);
  r.validation = std::move(tv.validation);
  r.held_out = h;
  if (o.limit > 0 && o.limit < r.train.size()) {
    std::vector<int64_t> first(static_cast<size_t>(o.limit));
    for (int64_t i = 0; i < o.limit; ++i) first[i] = i;
    r.train = subset(r.train, first, r.train.name + ", first " + std::to_string(o.limit));
  }
  return r;
}

inline Shape sample_shape(const Dataset& d) {
  return Shape(d.images.shape().begin() + 1, d.images.shape().end());
}

inline void print_epoch(const EpochStats& s) {
  std::printf("epoch %2d  lr %.4g  loss %.4f  train %.2f%%  test top-1 %.2f%% top-5 %.2f%%  %.1f s (%.0f img/s)\n",
              s.epoch, s.lr, s.train_loss, 100 * s.train_top1, 100 * s.test_top1,
              100 * s.test_top5, s.seconds, s.images_per_second);
  std::fflush(stdout);
}

inline void write_json(const std::string& path, const json& j) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw Error("cannot write '" + path + "'");
    f << j.dump(2) << "\n";
    if (!f) throw Error("cannot write '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot write '" + path + "'");
}

inline json profile_json(const ModelProfile& p) {
  json layers = json::array();
  for (const auto& l : p.layers)
    layers.push_back({{"name", l.name}, {"type", l.type}, {"output", l.output},
                      {"flops", l.flops}, {"median_ms", l.median_ms}, {"min_ms", l.min_ms}});
  return {{"batch", p.batch}, {"threads", p.threads}, {"iterations", p.iterations},
          {"median_ms", p.median_ms}, {"min_ms", p.min_ms}, {"flops", p.flops},
          {"activation_bytes", p.activation_bytes},
          {"isa", isa_name(active_isa())}, {"layers", layers}};
}

inline std::vector<EpochStats> run_training(Model& m, const Dataset& tr, const Dataset& te,
                                     const TrainConfig& cfg) {
  std::printf("training on %lld images, testing on %lld, batch %lld, %d thread(s), ISA %s\n",
              static_cast<long long>(tr.size()), static_cast<long long>(te.size()),
              static_cast<long long>(cfg.batch), omp_get_max_threads(), isa_name(active_isa()));
  // A network whose units died early (too high a learning rate) trains on at chance, its loss
  // stuck at ln(classes): say so after the first epoch instead of leaving it to the user to notice
  // twelve epochs later.
  const Shape out = m.output_shape(1);
  const int64_t classes = out.size() == 2 ? out[1] : 0;
  return train(m, tr, &te, cfg, [&](const EpochStats& s) {
    print_epoch(s);
    if (s.epoch == 1 && trained_at_chance(s, classes))
      std::fprintf(stderr,
                   "deftnn: warning: the network is not learning (loss %.4f = ln %lld, train "
                   "accuracy %.1f%%, chance): its units died early; try a lower --lr (now %g)\n",
                   s.train_loss, static_cast<long long>(classes), 100 * s.train_top1, cfg.lr);
  });
}


}  // namespace deftnn::cli
