// The deftnn command: train, eval, bench, info, demo. It only parses arguments and prints; the
// work is done by library calls a user could make themselves.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/io.h"
#include "deftnn/model.h"
#include "deftnn/precision.h"
#include "deftnn/profile.h"
#include "deftnn/prune.h"
#include "deftnn/train.h"
#include "deftnn/zoo.h"
#include "cli/common.h"

using namespace deftnn;
using namespace deftnn::cli;


namespace {

// The zoo's learning rates for --lr's help: the most common one, then the networks that differ
// ("0.01, cifarnet 0.005"), from the zoo's own table.
std::string zoo_rates() {
  auto str = [](double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  };
  std::map<double, int> count;
  for (const std::string& n : zoo_names()) ++count[zoo_learning_rate(n)];
  double common = 0;
  int most = 0;
  for (const auto& [rate, c] : count)
    if (c > most) {
      most = c;
      common = rate;
    }
  std::string s = str(common);
  for (const std::string& n : zoo_names())
    if (zoo_learning_rate(n) != common) s += ", " + n + " " + str(zoo_learning_rate(n));
  return s;
}

// OpenMP worker threads wait passively (sleep in the kernel between parallel regions) when the
// machine is already oversubscribed as the command starts (1-minute load average at least twice
// the online CPUs), unless the user chose a policy. libgomp's default spins up to ~300k pause
// loops first; on an oversubscribed machine the spinning threads burn the time slices the
// working ones need: ResNet-18 at batch 1, 2 threads, load average 7: 540 ms median spinning
// against 38 ms passive (SqueezeNet 1.1 at batch 16: 390-600 against 167 ms; same run,
// interleaved). On a quiet machine spinning is faster (SqueezeNet 1.1 at batch 1 4.9 against
// 6.0 ms passive: a sleeping worker is woken for each of a forward pass's parallel regions), so
// it stays the default there, as in PyTorch. The threshold is twice the CPUs so that a
// benchmark's own previous runs (load about the thread count) do not flip the policy. libgomp
// reads the variable once, when it is loaded (before main), so the process re-executes itself
// once with it set; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT is always respected.
//
// The 1-minute average lags: a benchmark that starts just after other jobs do (or just before
// the average reaches the threshold) spun on a busy machine, SqueezeNet 1.1 at batch 1 taking
// 636 ms against ORT's 12 ms (2 threads, two compile jobs and a training job runnable, load
// average 4.1 and rising). So the runnable threads are also sampled as the command starts
// (/proc/stat procs_running, 5 samples 2 ms apart, minus this thread): when the other runnable
// threads at least fill the CPUs left over by this process's threads, waiting is passive too.
double other_runnable_threads() {
  std::vector<int> v;
  for (int i = 0; i < 5; ++i) {
    if (i) usleep(2000);
    std::ifstream f("/proc/stat");
    std::string key;
    long n = -1;
    while (f >> key) {
      if (key == "procs_running") {
        f >> n;
        break;
      }
      f.ignore(1 << 20, '\n');
    }
    if (n < 1) return 0.0;
    v.push_back(static_cast<int>(n - 1));   // this thread is running
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];   // the median: a sampled burst (another short command) does not count
}

bool machine_oversubscribed() {
  std::ifstream f("/proc/loadavg");
  double load1 = 0.0;
  if (!(f >> load1)) return false;
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus <= 0) return false;
  if (load1 >= 2.0 * static_cast<double>(cpus)) return true;
  // The workers default to one per CPU, so any other runnable thread shares a core with one.
  return other_runnable_threads() >= 1.0;
}

void passive_wait_when_oversubscribed(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (!machine_oversubscribed()) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);   // returns only on failure: go on with the default policy
  unsetenv("OMP_WAIT_POLICY");
}

}  // namespace

int main(int argc, char** argv) {
  passive_wait_when_oversubscribed(argv);
  CLI::App app{"deftnn: train, optimise and run convolutional networks fast on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "deftnn 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "worker threads (default: all cores)")->check(CLI::Range(1, 1024));
  std::string winograd;
  app.add_option("--winograd", winograd,
                 "Winograd F(2x2,3x3) for dense fp32 3x3 stride-1 convs at inference: auto (default: "
                 "where it pays), off (direct kernels only), on (every such conv); also DEFTNN_WINOGRAD")
      ->check(CLI::IsMember({"auto", "off", "on"}));
  std::string sparse;
  app.add_option("--sparse", sparse,
                 "CSR sparse kernels for pruned fp32 conv/fc layers at inference: auto (default: where "
                 "the weight density is under the measured crossover), off (dense kernels), on (every "
                 "such layer); also DEFTNN_SPARSE")
      ->check(CLI::IsMember({"auto", "off", "on"}));

  // train
  auto* c_train = app.add_subcommand("train", "train a network on Fashion-MNIST and save it");
  std::string train_net = "lenet", train_out = "model.deft", train_json;
  TrainConfig tc;
  DataOptions train_data;
  c_train->add_option("--net", train_net, "network: a zoo name or a model file to continue training")
      ->capture_default_str();
  c_train->add_option("-o,--out", train_out, "where to save the trained model")->capture_default_str();
  c_train->add_option("--epochs", tc.epochs, "training epochs")->capture_default_str()->check(CLI::Range(0, 100000));
  c_train->add_option("--batch", tc.batch, "mini-batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  c_train->add_option("--lr", tc.lr, "base learning rate (default: the network's: " + zoo_rates() + ")")
      ->check(CLI::PositiveNumber);
  c_train->add_option("--momentum", tc.momentum, "SGD momentum")->capture_default_str()->check(CLI::Range(0.0, 0.9999));
  c_train->add_option("--weight-decay", tc.weight_decay, "L2 weight decay")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c_train->add_option("--lr-step", tc.lr_step, "multiply lr by --lr-gamma every N epochs (0: never)")->capture_default_str()->check(CLI::Range(0, 100000));
  c_train->add_option("--lr-gamma", tc.lr_gamma, "learning-rate decay factor")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c_train->add_option("--seed", tc.seed, "seed for initialisation, shuffling and dropout")->capture_default_str();
  c_train->add_option("--json", train_json, "write per-epoch statistics as JSON");
  add_data_options(c_train, train_data);
  ValidationArgs train_valid;
  add_validation_options(c_train, train_valid, false);

  // eval
  auto* c_eval = app.add_subcommand("eval", "evaluate a model's top-1/top-5 accuracy on the Fashion-MNIST test set");
  std::string eval_model, eval_json;
  int64_t eval_batch = 256;
  DataOptions eval_data;
  c_eval->add_option("model", eval_model, "model file")->required();
  c_eval->add_option("--batch", eval_batch, "batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  c_eval->add_option("--json", eval_json, "write the result as JSON");
  std::string eval_format = "f32", eval_formats, eval_mode = "fission";
  c_eval->add_option("--format", eval_format,
                     "weight format of the conv/fc layers at inference (f32, half, deft16, deft16q, "
                     "bf16, deft8_e1..deft8_e7), or per layer type/name, e.g. conv:bf16+fc:deft8_e4; "
                     "activations stay fp32, except bf16 (and Deft-8 in --fission-mode bf16_dot) which rounds them to bf16 too")->capture_default_str();
  c_eval->add_option("--formats", eval_formats,
                     "sweep: comma-separated formats, or 'all' (accuracy per format in one table)")
      ->excludes("--format");
  c_eval->add_option("--fission-mode", eval_mode, "fission (widen next to the FMA), offchip, or bf16_dot (Deft-8 on the bf16 unit)")
      ->capture_default_str()->check(CLI::IsMember({"fission", "offchip", "bf16_dot"}));
  add_data_options(c_eval, eval_data);
  std::string eval_device = "cpu";
  CudaBenchArgs eval_cuda;
  c_eval->add_option("--device", eval_device, "cpu, or cuda (the CUDA backend)")
      ->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  c_eval->add_option("--cuda-conv-format", eval_cuda.conv_format, "--device cuda: conv weights")->capture_default_str();
  c_eval->add_option("--cuda-fc-format", eval_cuda.fc_format, "--device cuda: fc weights")->capture_default_str();
  c_eval->add_option("--cuda-staging", eval_cuda.staging, "--device cuda: near, nearw, offchip or tc")
      ->capture_default_str()->check(CLI::IsMember({"near", "nearw", "offchip", "tc"}));

  // bench
  auto* c_bench = app.add_subcommand("bench", "time a model's forward pass per layer and end to end");
  std::string bench_model, bench_json, bench_input;
  std::vector<int64_t> bench_batches{1};
  int bench_iters = 20, bench_warmup = 3, bench_classes = 0;
  c_bench->add_option("model", bench_model, "model file or zoo network name")->required();
  c_bench->add_option("--batch", bench_batches, "batch sizes (e.g. --batch 1 32)")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_bench->add_option("--iters", bench_iters, "timed iterations (medians reported)")->capture_default_str()->check(CLI::Range(1, 100000));
  c_bench->add_option("--warmup", bench_warmup, "untimed warm-up iterations")->capture_default_str()->check(CLI::Range(0, 100000));
  c_bench->add_option("--input", bench_input, "input shape C,H,W for a zoo network");
  c_bench->add_option("--classes", bench_classes, "classes for a zoo network")->check(CLI::Range(1, 1 << 20));
  c_bench->add_option("--json", bench_json, "write the results as JSON");
  std::string bench_formats, bench_mode = "fission";
  c_bench->add_option("--formats", bench_formats,
                      "compare weight formats side by side (e.g. f32,half,deft16,deft16q,bf16,"
                      "deft8_e4,deft8_e5,conv:bf16+fc:deft8_e4 or 'all'): one copy of the model per format, interleaved "
                      "round by round; speedups against f32");
  c_bench->add_option("--fission-mode", bench_mode, "fission (widen next to the FMA), offchip, or bf16_dot (Deft-8 on the bf16 unit)")
      ->capture_default_str()->check(CLI::IsMember({"fission", "offchip", "bf16_dot"}));
  std::string bench_device = "cpu";
  CudaBenchArgs cuda_args;
  c_bench->add_option("--device", bench_device, "cpu, or cuda (the CUDA backend: the model as one CUDA graph)")
      ->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  c_bench->add_option("--cuda-conv-format", cuda_args.conv_format,
                      "--device cuda: conv weights (f32, half, deft16, deft16q, deft8_e1..e7)")->capture_default_str();
  c_bench->add_option("--cuda-fc-format", cuda_args.fc_format, "--device cuda: fc weights")->capture_default_str();
  c_bench->add_option("--cuda-staging", cuda_args.staging,
                      "--device cuda: near (both operands widened in registers), nearw (weights only), "
                      "offchip (widened when staged), tc (tensor cores)")
      ->capture_default_str()->check(CLI::IsMember({"near", "nearw", "offchip", "tc"}));

  // info
  auto* c_info = app.add_subcommand("info", "show a model's layers, shapes, parameters and FLOPs");
  std::string info_model, info_input;
  int64_t info_batch = 1;
  int info_classes = 0;
  c_info->add_option("model", info_model, "model file or zoo network name")->required();
  c_info->add_option("--batch", info_batch, "batch size for shapes and FLOPs")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  c_info->add_option("--input", info_input, "input shape C,H,W for a zoo network");
  c_info->add_option("--classes", info_classes, "classes for a zoo network")->check(CLI::Range(1, 1 << 20));

  // demo
  auto* c_demo = app.add_subcommand("demo", "train LeNet on Fashion-MNIST, evaluate it, and time each layer");
  TrainConfig dc;
  dc.epochs = 3;
  std::string demo_out = "lenet-fashion.deft";
  DataOptions demo_data;
  c_demo->add_option("--epochs", dc.epochs, "training epochs")->capture_default_str()->check(CLI::Range(1, 1000));
  c_demo->add_option("-o,--out", demo_out, "where to save the trained model")->capture_default_str();
  add_data_options(c_demo, demo_data);

  // Commands defined in other files (cmd_*.cpp) register themselves here.
  Registry registry;
  register_sve_commands(app, registry);
  register_onnx_commands(app, registry);
  register_format_commands(app, registry);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (threads > 0) omp_set_num_threads(threads);
    winograd_policy();   // a bad DEFTNN_WINOGRAD is reported here, not by the first conv
    if (!winograd.empty()) set_winograd_policy(winograd_policy_from_name(winograd));
    sparse_policy();   // likewise a bad DEFTNN_SPARSE
    if (!sparse.empty()) set_sparse_policy(sparse_policy_from_name(sparse));

    bool handled = false;
    for (auto& [cmd, run] : registry.commands)
      if (cmd->parsed()) {
        run();
        handled = true;
      }
    if (handled) {
    } else if (c_train->parsed()) {
      Dataset tr = load_data(train_data, true, train_net);
      Dataset te = load_data(train_data, false, train_net);
      ModelMetadata meta;
      Model m = is_zoo_name(train_net) ? build_zoo(train_net, ZooOptions{sample_shape(tr), 10})
                                       : load_model(train_net, &meta);
      if (is_zoo_name(train_net)) m.init_params(tc.seed);
      if (c_train->count("--lr") == 0 && is_zoo_name(train_net)) tc.lr = zoo_learning_rate(train_net);
      // Continuing a model trained with a split keeps it (the held-out images stay unseen).
      HeldOut held = read_held_out(meta);
      if (train_valid.from_train > 0) {
        HeldOut asked{train_valid.from_train, tr.size(), train_valid.seed_given ? train_valid.seed : held.seed};
        if (!held.empty() && (asked.total != held.total || asked.seed != held.seed || asked.held_out > held.held_out))
          throw Error("--val-from-train: " + train_net + " was trained with " + held.describe() +
                      " held out; continuing with another split would train on those images");
        held = asked;
      } else if (train_valid.seed_given) {
        throw Error("--split-seed needs --val-from-train");
      }
      Dataset validation;
      if (!held.empty()) {
        check(tr.size() == held.total, "--val-from-train: " + train_net + " holds out images of the first " +
                                           std::to_string(held.total) + " training images, but " +
                                           std::to_string(tr.size()) + " are loaded (--limit)");
        TrainValidation tv = apply_validation_split(tr, make_validation_split(held));
        tr = std::move(tv.train);
        validation = std::move(tv.validation);
        std::printf("holding out %s for validation\n", held.describe().c_str());
      }
      auto hist = run_training(m, tr, te, tc);
      if (!held.empty()) {
        const EvalResult ev = evaluate(m, validation, 256, false);
        std::printf("validation (%lld held-out training images): top-1 %.2f%%\n",
                    static_cast<long long>(validation.size()), 100 * ev.top1);
      }
      meta.erase("validation_held_out");
      meta.erase("validation_held_out_of");
      meta.erase("validation_split_seed");
      write_held_out(meta, held);
      save_model(m, train_out, meta);
      std::printf("saved %s\n", train_out.c_str());
      json j = json::array();
      for (const auto& s : hist)
        j.push_back({{"epoch", s.epoch}, {"lr", s.lr}, {"train_loss", s.train_loss},
                     {"train_top1", s.train_top1}, {"test_top1", s.test_top1},
                     {"test_top5", s.test_top5}, {"seconds", s.seconds}});
      write_json(train_json, {{"net", train_net}, {"epochs", j}});
    } else if (c_eval->parsed() && eval_device == "cuda") {
      eval_cuda.model = eval_model;
      eval_cuda.json = eval_json;
      run_cuda_eval(eval_cuda, eval_data, eval_batch);
    } else if (c_eval->parsed()) {
      Model m = load_model(eval_model);
      Dataset te = load_fashion_mnist(eval_data.dir, false, eval_data.limit);
      int pad = eval_data.pad >= 0 ? eval_data.pad
                                   : static_cast<int>((m.input_shape().back() - te.images.dim(3)) / 2);
      if (pad > 0) te = pad_images(te, pad);
      const FissionMode mode = fission_mode_from_name(eval_mode);
      if (eval_formats.empty()) {
        const FormatSpec spec = parse_format_spec(eval_format);
        apply_format_spec(m, spec, mode);
        m.freeze(true);   // inference only: layers may prepack their weights once
        EvalResult r = evaluate(m, te, eval_batch, true);
        std::printf("%s on %s, format %s: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld images, %.2f s, %.0f img/s)\n",
                    eval_model.c_str(), te.name.c_str(), spec.name.c_str(), 100 * r.top1, 100 * r.top5,
                    r.loss, static_cast<long long>(r.count), r.seconds,
                    r.count / std::max(r.seconds, 1e-9));
        write_json(eval_json, {{"model", eval_model}, {"format", spec.name},
                               {"fission_mode", eval_mode}, {"top1", r.top1}, {"top5", r.top5},
                               {"loss", r.loss}, {"count", r.count}, {"seconds", r.seconds}});
      } else {
        std::vector<FormatSpec> fl = parse_format_specs(eval_formats);
        if (std::none_of(fl.begin(), fl.end(), [](const FormatSpec& f) { return f.name == "f32"; }))
          fl.insert(fl.begin(), parse_format_spec("f32"));
        std::printf("%s on %s, weights in each format (activations fp32; bf16, and Deft-8 in bf16_dot mode, round them to bf16), mode %s:\n",
                    eval_model.c_str(), te.name.c_str(), eval_mode.c_str());
        std::printf("%-20s %5s %9s %9s %9s %10s\n", "format", "bits", "top-1 %", "top-5 %", "loss",
                    "d top-1");
        json rows = json::array();
        double base = 0;
        for (const FormatSpec& f : fl) {
          apply_format_spec(m, f, mode);
          EvalResult r = evaluate(m, te, eval_batch, false);
          if (f.name == "f32") base = r.top1;
          const int bits = f.single() ? format_info(f.parts[0].second).bits_per_value : 0;
          std::printf("%-20s %5s %9.2f %9.2f %9.4f %+10.2f\n", f.name.c_str(),
                      bits ? std::to_string(bits).c_str() : "mixed", 100 * r.top1, 100 * r.top5,
                      r.loss, 100 * (r.top1 - base));
          std::fflush(stdout);
          rows.push_back({{"format", f.name}, {"bits", bits},
                          {"top1", r.top1}, {"top5", r.top5}, {"loss", r.loss},
                          {"delta_top1", r.top1 - base}, {"count", r.count}});
        }
        write_json(eval_json, {{"model", eval_model}, {"fission_mode", eval_mode},
                               {"formats", rows}});
      }
    } else if (c_bench->parsed() && bench_device == "cuda") {
      if (!bench_formats.empty()) throw Error("--formats is for the CPU; on the GPU use --cuda-conv-format / --cuda-fc-format");
      cuda_args.model = bench_model;
      cuda_args.input = bench_input;
      cuda_args.classes = bench_classes;
      cuda_args.batches = bench_batches;
      cuda_args.iters = bench_iters;
      cuda_args.json = bench_json;
      run_cuda_bench(cuda_args);
    } else if (c_bench->parsed() && !bench_formats.empty()) {
      std::vector<FormatSpec> fl = parse_format_specs(bench_formats);
      auto is_f32 = [](const FormatSpec& f) { return f.name == "f32"; };
      if (std::none_of(fl.begin(), fl.end(), is_f32)) fl.insert(fl.begin(), parse_format_spec("f32"));
      const FissionMode mode = fission_mode_from_name(bench_mode);
      std::vector<Model> models;
      std::vector<Model*> ptrs;
      for (const FormatSpec& f : fl) {
        models.push_back(open_model(bench_model, parse_shape(bench_input), bench_classes));
        apply_format_spec(models.back(), f, mode);
      }
      for (Model& m : models) ptrs.push_back(&m);
      const size_t base = static_cast<size_t>(std::find_if(fl.begin(), fl.end(), is_f32) - fl.begin());
      json runs = json::array();
      const MachineRoof roof = measure_roof(omp_get_max_threads());   // before any timing
      for (int64_t b : bench_batches) {
        std::vector<ModelProfile> ps = profile_models(ptrs, b, bench_iters, bench_warmup);
        std::printf("%s, batch %lld, ISA %s, %d threads, mode %s, winograd %s, %d rounds (formats "
                    "interleaved):\n",
                    bench_model.c_str(), static_cast<long long>(b), isa_name(active_isa()),
                    ps[0].threads, bench_mode.c_str(), winograd_policy_name(winograd_policy()),
                    bench_iters);
        std::printf("%-20s %12s %12s %9s\n", "format", "median ms", "min ms", "speedup");
        for (size_t i = 0; i < fl.size(); ++i)
          std::printf("%-20s %12.3f %12.3f %8.2fx\n", fl[i].name.c_str(), ps[i].median_ms,
                      ps[i].min_ms, ps[base].median_ms / std::max(ps[i].median_ms, 1e-12));
        std::printf("per layer (conv, fc), median ms (speedup vs f32):\n%-10s %-5s", "layer", "type");
        for (const FormatSpec& f : fl) std::printf(" %17s", f.name.substr(0, 17).c_str());
        std::printf("\n");
        for (size_t l = 0; l < ps[0].layers.size(); ++l) {
          const LayerTime& lt = ps[0].layers[l];
          if (lt.type != "conv" && lt.type != "fc") continue;
          std::printf("%-10s %-5s", lt.name.c_str(), lt.type.c_str());
          for (size_t i = 0; i < fl.size(); ++i) {
            const double t = ps[i].layers[l].median_ms;
            std::printf(" %8.3f (%5.2fx)", t, ps[base].layers[l].median_ms / std::max(t, 1e-12));
          }
          std::printf("\n");
        }
        // Roofline: per layer and format, bytes moved per FLOP and median time / roof time.
        std::printf("roofline (measured here: fp32 FMA %.0f GFLOP/s, bf16 %.0f GFLOP/s, DRAM %.1f "
                    "GB/s, %d threads): bytes/FLOP and time/roof (m: memory bound)\n%-10s %-5s",
                    roof.fp32_gflops, roof.bf16_gflops, roof.dram_gbps, roof.threads, "layer",
                    "type");
        for (const FormatSpec& f : fl) std::printf(" %17s", f.name.substr(0, 17).c_str());
        std::printf("\n");
        std::vector<json> rj(fl.size(), json::array());
        for (size_t l = 0; l < ps[0].layers.size(); ++l) {
          const LayerTime& lt = ps[0].layers[l];
          if (lt.type != "conv" && lt.type != "fc") continue;
          std::printf("%-10s %-5s", lt.name.c_str(), lt.type.c_str());
          for (size_t i = 0; i < fl.size(); ++i) {
            const LayerRoof r = layer_roof(models[i], models[i].find(lt.name), b, roof);
            const double t = ps[i].layers[l].median_ms, bpf = r.bytes / std::max<double>(1, r.flops);
            std::printf("  %7.4f %6.2f%c", bpf, t / std::max(r.roof_ms, 1e-12),
                        r.memory_bound ? 'm' : ' ');
            rj[i].push_back({{"name", lt.name}, {"bytes", r.bytes}, {"bytes_per_flop", bpf},
                             {"roof_ms", r.roof_ms}, {"memory_bound", r.memory_bound},
                             {"time_over_roof", t / std::max(r.roof_ms, 1e-12)}});
          }
          std::printf("\n");
        }
        std::printf("\n");
        json fj = json::array();
        for (size_t i = 0; i < fl.size(); ++i) {
          json pj = profile_json(ps[i]);
          pj["roofline"] = rj[i];
          pj["format"] = fl[i].name;
          pj["speedup"] = ps[base].median_ms / std::max(ps[i].median_ms, 1e-12);
          fj.push_back(pj);
        }
        runs.push_back({{"batch", b}, {"fission_mode", bench_mode}, {"formats", fj},
                        {"roof", {{"threads", roof.threads}, {"fp32_gflops", roof.fp32_gflops},
                                  {"bf16_gflops", roof.bf16_gflops}, {"dram_gbps", roof.dram_gbps}}}});
      }
      write_json(bench_json, {{"model", bench_model},
                              {"winograd", winograd_policy_name(winograd_policy())},
                              {"runs", runs}});
    } else if (c_bench->parsed()) {
      Model m = open_model(bench_model, parse_shape(bench_input), bench_classes);
      json runs = json::array();
      for (int64_t b : bench_batches) {
        ModelProfile p = profile_model(m, b, bench_iters, bench_warmup);
        std::printf("%s, batch %lld, ISA %s, winograd %s, %d iterations:\n%s\n",
                    bench_model.c_str(), static_cast<long long>(b), isa_name(active_isa()),
                    winograd_policy_name(winograd_policy()), bench_iters,
                    format_profile(p).c_str());
        runs.push_back(profile_json(p));
      }
      write_json(bench_json, {{"model", bench_model},
                              {"winograd", winograd_policy_name(winograd_policy())},
                              {"runs", runs}});
    } else if (c_info->parsed()) {
      Model m = open_model(info_model, parse_shape(info_input), info_classes);
      std::printf("%s", m.summary(info_batch).c_str());
      // A pruned model: each conv / fc weight's density, and whether --sparse auto runs it on
      // the CSR kernels.
      std::string pruned;
      for (const Node& n : m.nodes()) {
        const std::string t = n.layer->type();
        const Param* w = n.layer->param("weight");
        if ((t != "conv" && t != "fc") || !w || w->value.numel() == 0) continue;
        const Tensor& v = w->value;
        const double d = weight_density(v.data(), v.numel());
        if (d > 0.99) continue;
        const int64_t groups = t == "conv" ? n.layer->attrs().get_int("groups", 1) : 1;
        char buf[128];
        std::snprintf(buf, sizeof buf, "%s%s %.1f%%%s", pruned.empty() ? "" : ", ", n.name.c_str(), 100 * d,
                      sparse_pays(t, d, v.dim(0) / groups, v.numel() / v.dim(0)) ? " (sparse)" : "");
        pruned += buf;
      }
      if (!pruned.empty())
        std::printf("pruned weights (non-zeros; '(sparse)': CSR kernels under --sparse %s): %s\n",
                    sparse_policy_name(sparse_policy()), pruned.c_str());
    } else if (c_demo->parsed()) {
      std::printf("deftnn demo: Caffe LeNet on Fashion-MNIST (%d epochs)\n", dc.epochs);
      Dataset tr = load_data(demo_data, true, "lenet");
      Dataset te = load_data(demo_data, false, "lenet");
      Model m = build_zoo("lenet", ZooOptions{sample_shape(tr), 10});
      m.init_params(dc.seed);
      std::printf("%s\n", m.summary(1).c_str());
      auto t0 = std::chrono::steady_clock::now();
      run_training(m, tr, te, dc);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EvalResult r = evaluate(m, te, 256, true);
      std::printf("\ntest set (%lld images): top-1 %.2f%%  top-5 %.2f%%  (training + evaluation %.1f s)\n",
                  static_cast<long long>(r.count), 100 * r.top1, 100 * r.top5, secs);
      save_model(m, demo_out);
      std::printf("saved %s\n\n", demo_out.c_str());
      for (int64_t b : {int64_t{1}, int64_t{64}}) {
        ModelProfile p = profile_model(m, b, 50, 5);
        std::printf("per-layer inference time, batch %lld, ISA %s:\n%s\n", static_cast<long long>(b),
                    isa_name(active_isa()), format_profile(p).c_str());
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "deftnn: error: %s\n", printable(e.what()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deftnn: error: %s\n", printable(e.what()).c_str());
    return 1;
  }
  return 0;
}
