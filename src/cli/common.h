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
          {"isa", isa_name(active_isa())}, {"layers", layers}};
}

inline std::vector<EpochStats> run_training(Model& m, const Dataset& tr, const Dataset& te,
                                     const TrainConfig& cfg) {
  std::printf("training on %lld images, testing on %lld, batch %lld, %d thread(s), ISA %s\n",
              static_cast<long long>(tr.size()), static_cast<long long>(te.size()),
              static_cast<long long>(cfg.batch), omp_get_max_threads(), isa_name(active_isa()));
  return train(m, tr, &te, cfg, print_epoch);
}


}  // namespace deftnn::cli
