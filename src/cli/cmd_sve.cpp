// deftnn subcommands registered from this file (see cli/common.h): synapse vector elimination.
//   optimize MODEL --data DIR --out OPT   candidates, fine-tuning and the frontier (library:
//                                         deftnn/optimize.h)
//   frontier OPT [--plot f.svg]           prints the frontier, draws it (accuracy vs speedup)
//   frontier OPT --target max-loss=0.5 [-o chosen.deft] [--eval] [--bench]
//                                         selects the configuration nearest a target, writes the
//                                         composed model (so `deftnn eval` / `bench` run it)
//   compare A B ...                       models timed side by side
//   refine OPT                            joint fine-tuning of frontier points, selection
//   prune MODEL -o OUT --density D        the magnitude-pruning baseline (deftnn/prune.h):
//                                         prune, masked retraining, save (run sparse: --sparse)
// (`deftnn run` belongs to cmd_onnx.cpp: it runs a model on a .npy input; selection lives here.)
#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "cli/common.h"
#include "deftnn/onnx.h"
#include "deftnn/optimize.h"
#include "deftnn/prune.h"

namespace deftnn::cli {

namespace {

std::vector<double> parse_doubles(const std::string& s, const std::string& what) {
  std::vector<double> r;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t used = 0;
      const double v = std::stod(tok, &used);
      if (used != tok.size() || !std::isfinite(v)) throw std::invalid_argument(tok);
      r.push_back(v);
    } catch (const std::exception&) {
      throw Error(what + " '" + s + "': expected numbers separated by commas, e.g. 0.9,0.8,0.7");
    }
  }
  check(!r.empty(), what + " is empty");
  return r;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> r;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) r.push_back(tok);
  return r;
}

std::string describe(const Optimization& opt, const FrontierPoint& p) {
  std::string s;
  for (const auto& l : opt.layers) {
    auto it = p.choice.find(l);
    const int ci = it == p.choice.end() ? -1 : it->second;
    char buf[96];
    if (ci < 0) {
      std::snprintf(buf, sizeof buf, "%s dense", l.c_str());
    } else {
      const auto& e = opt.candidates[ci].elimination;
      std::snprintf(buf, sizeof buf, "%s a=%.2f K'=%lld/%lld", l.c_str(), e.correlation_threshold,
                    static_cast<long long>(e.kept), static_cast<long long>(e.K));
    }
    if (!s.empty()) s += ", ";
    s += buf;
  }
  return s;
}

void print_frontier(const Optimization& opt, int mark) {
  std::printf("base: top-1 %.2f%% on %s, %.3f ms at batch %lld\n", 100 * opt.base_accuracy,
              opt.validation.c_str(), opt.base_ms, static_cast<long long>(opt.time_batch));
  std::printf("  %-3s %8s %8s %9s %8s  %s\n", "#", "top-1", "loss", "ms", "speedup", "configuration");
  for (size_t i = 0; i < opt.frontier.size(); ++i) {
    const auto& p = opt.frontier[i];
    std::printf("%s %-3zu %7.2f%% %7.2fpt %9.3f %7.2fx  %s\n", static_cast<int>(i) == mark ? "*" : " ",
                i, 100 * p.accuracy, 100 * (opt.base_accuracy - p.accuracy), p.ms, p.speedup,
                describe(opt, p).c_str());
  }
  std::fflush(stdout);
}

// Accuracy (y) against speedup (x), the frontier as a step line with points (paper Fig. 14).
void write_svg(const Optimization& opt, const std::string& path) {
  const double W = 640, H = 420, L = 70, R = 20, T = 40, B = 55;
  double xmin = 1.0, xmax = 1.0, ymin = 100 * opt.base_accuracy, ymax = ymin;
  for (const auto& p : opt.frontier) {
    xmin = std::min(xmin, p.speedup);
    xmax = std::max(xmax, p.speedup);
    ymin = std::min(ymin, 100 * p.accuracy);
    ymax = std::max(ymax, 100 * p.accuracy);
  }
  auto nice = [](double span) {
    const double raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
      if (raw <= m * mag) return m * mag;
    return 10 * mag;
  };
  xmin = std::floor(xmin * 10) / 10;
  xmax = std::max(xmin + 0.2, std::ceil(xmax * 10) / 10);
  ymin = std::floor(ymin - 0.5);
  ymax = std::ceil(ymax + 0.5);
  const double xs = nice(xmax - xmin), ys = nice(ymax - ymin);
  auto X = [&](double v) { return L + (v - xmin) / (xmax - xmin) * (W - L - R); };
  auto Y = [&](double v) { return H - B - (v - ymin) / (ymax - ymin) * (H - T - B); };
  std::ostringstream s;
  char buf[512];
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::snprintf(buf, sizeof buf,
                "<text x=\"%g\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Synapse vector elimination: "
                "accuracy vs. speedup (batch %lld, measured)</text>\n",
                W / 2, static_cast<long long>(opt.time_batch));
  s << buf;
  for (double v = std::ceil(xmin / xs) * xs; v <= xmax + 1e-9; v += xs) {
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" "
                  "y=\"%.1f\" text-anchor=\"middle\">%.2gx</text>\n",
                  X(v), T, X(v), H - B, X(v), H - B + 16, v);
    s << buf;
  }
  for (double v = std::ceil(ymin / ys) * ys; v <= ymax + 1e-9; v += ys) {
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" "
                  "y=\"%.1f\" text-anchor=\"end\">%g%%</text>\n",
                  L, Y(v), W - R, Y(v), L - 6, Y(v) + 4, v);
    s << buf;
  }
  std::snprintf(buf, sizeof buf,
                "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"black\"/>\n"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">speedup over dense (end to end)</text>\n"
                "<text x=\"18\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 18 %g)\">validation top-1</text>\n",
                L, T, W - L - R, H - T - B, (L + W - R) / 2, H - 14, (T + H - B) / 2, (T + H - B) / 2);
  s << buf;
  std::snprintf(buf, sizeof buf,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"gray\">dense %.2f%%</text>\n",
                L, Y(100 * opt.base_accuracy), W - R, Y(100 * opt.base_accuracy), W - R - 4,
                Y(100 * opt.base_accuracy) - 4, 100 * opt.base_accuracy);
  s << buf;
  std::vector<const FrontierPoint*> pts;
  for (const auto& p : opt.frontier) pts.push_back(&p);
  std::sort(pts.begin(), pts.end(), [](auto a, auto b) { return a->speedup < b->speedup; });
  s << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
  for (const auto* p : pts) {
    std::snprintf(buf, sizeof buf, "%.1f,%.1f ", X(p->speedup), Y(100 * p->accuracy));
    s << buf;
  }
  s << "\"/>\n";
  for (const auto* p : pts) {
    std::snprintf(buf, sizeof buf,
                  "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"><title>%.2f%%, %.2fx: %s</title></circle>\n",
                  X(p->speedup), Y(100 * p->accuracy), 100 * p->accuracy, p->speedup,
                  describe(opt, *p).c_str());
    s << buf;
  }
  s << "</svg>\n";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw Error("cannot write '" + path + "'");
    f << s.str();
    if (!f) throw Error("cannot write '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot write '" + path + "'");
}

}  // namespace

void register_sve_commands(CLI::App& app, Registry& registry) {
  // optimize
  struct OptimizeArgs {
    std::string model, out, thresholds = "0.9,0.8,0.7,0.6,0.5,0.4,0.3", layers;
    std::vector<std::string> layer_thresholds;
    int epochs = 1;
    double lr = 0.001;
    int64_t batch = 32, align = OptimizeOptions{}.align, ft_batch = 64;
    int iters = 30, max_eval = 24;
    int64_t refit = 0;
    DataOptions data;
    ValidationArgs valid;
  };
  auto oa = std::make_shared<OptimizeArgs>();
  auto* c_opt = app.add_subcommand(
      "optimize", "synapse vector elimination: per layer and threshold, search, fine-tune, time; save the accuracy/speed frontier");
  c_opt->add_option("model", oa->model, "trained model file")->required();
  c_opt->add_option("--out", oa->out, "output directory (base model, candidates, frontier.json)")->required();
  c_opt->add_option("--thresholds", oa->thresholds, "correlation thresholds alpha, comma-separated")->capture_default_str();
  c_opt->add_option("--layer-thresholds", oa->layer_thresholds,
                    "a layer's own thresholds instead of --thresholds, as LAYER=A,B,... (repeatable)");
  c_opt->add_option("--layers", oa->layers, "layers to optimise, comma-separated (default: every conv/fc but the last)");
  c_opt->add_option("--finetune-epochs", oa->epochs, "fine-tuning epochs per candidate")->capture_default_str()->check(CLI::Range(0, 1000));
  c_opt->add_option("--finetune-lr", oa->lr, "fine-tuning learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  c_opt->add_option("--finetune-batch", oa->ft_batch, "fine-tuning batch size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_opt->add_option("--batch", oa->batch, "batch size of the timings")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_opt->add_option("--iters", oa->iters, "timed iterations per measurement")->capture_default_str()->check(CLI::Range(1, 100000));
  c_opt->add_option("--align", oa->align, "round retained counts up to a multiple of this (16: an fc's truncated weight rows stay "
                    "vector-aligned for the batch-1 GEMV)")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  c_opt->add_option("--max-evaluated", oa->max_eval, "composed configurations evaluated for the frontier")->capture_default_str()->check(CLI::Range(2, 100000));
  c_opt->add_option("--refit", oa->refit, "least-squares refit of each candidate's kept columns on the first N training "
                                          "images (0: the paper's K/(K-D) scale)")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  add_data_options(c_opt, oa->data);
  add_validation_options(c_opt, oa->valid, true);
  c_opt->get_option("--limit")->description("fine-tune on only the first N training images (after the held-out ones are taken out)");
  registry.add(c_opt, [oa] {
    ModelMetadata meta;
    Model base = load_model(oa->model, &meta);
    SelectionData sd = selection_data(base, oa->data, oa->valid, read_held_out(meta));
    const Dataset& tr = sd.train;
    const Dataset& val = sd.validation;
    OptimizeOptions o;
    o.thresholds = parse_doubles(oa->thresholds, "--thresholds");
    for (const std::string& lt : oa->layer_thresholds) {
      const size_t eq = lt.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == lt.size())
        throw Error("--layer-thresholds: expected LAYER=A,B,... , got '" + lt + "'");
      const std::string l = lt.substr(0, eq);
      if (o.layer_thresholds.count(l)) throw Error("--layer-thresholds: layer '" + l + "' given twice");
      o.layer_thresholds[l] = parse_doubles(lt.substr(eq + 1), "--layer-thresholds " + l);
    }
    o.layers = split(oa->layers);
    o.finetune.epochs = oa->epochs;
    o.finetune.lr = oa->lr;
    o.finetune.batch = oa->ft_batch;
    o.time_batch = oa->batch;
    o.time_iterations = oa->iters;
    o.align = oa->align;
    o.max_evaluated = oa->max_eval;
    if (oa->refit > 0) {
      std::vector<int32_t> unused;
      gather_batch(tr, {}, 0, std::min(oa->refit, tr.size()), o.refit_images, unused);
    }
    o.progress = [](const std::string& s) {
      std::printf("%s\n", s.c_str());
      std::fflush(stdout);
    };
    std::printf("optimizing %s: fine-tune on %lld images (%d epoch(s), lr %g), validate on %lld, "
                "time at batch %lld, %d thread(s), ISA %s\n",
                oa->model.c_str(), static_cast<long long>(tr.size()), oa->epochs, oa->lr,
                static_cast<long long>(val.size()), static_cast<long long>(oa->batch),
                omp_get_max_threads(), isa_name(active_isa()));
    Optimization opt = optimize(base, tr, val, o);
    opt.validation_split = sd.held_out;
    save_optimization(opt, oa->out);
    std::printf("saved %s (%zu candidates, %zu frontier points)\n", oa->out.c_str(),
                opt.candidates.size(), opt.frontier.size());
    print_frontier(opt, -1);
  });

  // frontier
  struct FrontierArgs {
    std::string dir, plot, target, out, json_path;
    double max_loss = -1, min_speedup = -1;
    bool eval = false, bench = false;
    int64_t batch = 0;
    int iters = 30;
    DataOptions data;
  };
  auto fa = std::make_shared<FrontierArgs>();
  auto* c_fr = app.add_subcommand(
      "frontier", "print (and plot) a saved frontier; with a target, select a configuration and write it as a model");
  c_fr->add_option("opt", fa->dir, "directory written by deftnn optimize")->required();
  c_fr->add_option("--plot", fa->plot, "draw the frontier (accuracy vs speedup) as SVG to this file");
  c_fr->add_option("--target", fa->target, "select: \"max-loss=0.5\" (points) or \"min-speedup=2\"");
  c_fr->add_option("--max-accuracy-loss", fa->max_loss, "select the fastest point losing at most this many points")->check(CLI::NonNegativeNumber);
  c_fr->add_option("--min-speedup", fa->min_speedup, "select the most accurate point at least this fast")->check(CLI::NonNegativeNumber);
  c_fr->add_option("-o,--output", fa->out, "write the selected configuration as a model file");
  c_fr->add_flag("--eval", fa->eval, "evaluate the selected configuration (and the base) on the test set");
  c_fr->add_flag("--bench", fa->bench, "time the selected configuration against the base, side by side");
  c_fr->add_option("--batch", fa->batch, "batch size for --bench (default: the frontier's)")->check(CLI::Range(1, 1 << 16));
  c_fr->add_option("--iters", fa->iters, "timed iterations per round for --bench")->capture_default_str()->check(CLI::Range(1, 100000));
  c_fr->add_option("--json", fa->json_path, "write the frontier (and the selection) as JSON");
  add_data_options(c_fr, fa->data);
  registry.add(c_fr, [fa] {
    Optimization opt = load_optimization(fa->dir);
    int given = (!fa->target.empty()) + (fa->max_loss >= 0) + (fa->min_speedup >= 0);
    check(given <= 1, "give one target: --target, --max-accuracy-loss or --min-speedup");
    SelectTarget t;
    if (!fa->target.empty()) t = parse_target(fa->target);
    if (fa->max_loss >= 0) t.max_accuracy_loss = fa->max_loss;
    if (fa->min_speedup >= 0) t.min_speedup = fa->min_speedup;
    const int sel = given ? select_point(opt, t) : -1;
    print_frontier(opt, sel);
    if (!fa->plot.empty()) {
      write_svg(opt, fa->plot);
      std::printf("wrote %s\n", fa->plot.c_str());
    }
    json j = {{"dir", fa->dir}, {"base_accuracy", opt.base_accuracy}, {"base_ms", opt.base_ms},
              {"time_batch", opt.time_batch}};
    json pts = json::array();
    for (const auto& p : opt.frontier)
      pts.push_back({{"accuracy", p.accuracy}, {"ms", p.ms}, {"speedup", p.speedup},
                     {"configuration", describe(opt, p)}});
    j["frontier"] = pts;
    if (sel >= 0) {
      const FrontierPoint& p = opt.frontier[sel];
      std::printf("selected #%d: validation top-1 %.2f%% (loss %.2f points), %.2fx: %s\n", sel,
                  100 * p.accuracy, 100 * (opt.base_accuracy - p.accuracy), p.speedup,
                  describe(opt, p).c_str());
      j["selected"] = sel;
      Model m = compose(opt, p.choice);
      if (!fa->out.empty()) {
        ModelMetadata meta{{"sve_configuration", describe(opt, p)}, {"sve_optimization", fa->dir}};
        save_model(m, fa->out, meta);
        std::printf("wrote %s\n", fa->out.c_str());
      }
      if (fa->eval) {
        Dataset te = data_for(m, fa->data, false, fa->data.limit);
        EvalResult rb = evaluate(opt.base, te, 256, false), rs = evaluate(m, te, 256, false);
        std::printf("test set (%lld images): base top-1 %.2f%%, selected %.2f%% (loss %.2f points)\n",
                    static_cast<long long>(te.size()), 100 * rb.top1, 100 * rs.top1, 100 * (rb.top1 - rs.top1));
        j["test"] = {{"images", te.size()}, {"base_top1", rb.top1}, {"selected_top1", rs.top1}};
      }
      if (fa->bench) {
        const int64_t b = fa->batch > 0 ? fa->batch : opt.time_batch;
        std::vector<double> tb, ts;
        for (int r = 0; r < 5; ++r) {
          tb.push_back(profile_model(opt.base, b, fa->iters, 3).median_ms);
          ts.push_back(profile_model(m, b, fa->iters, 3).median_ms);
        }
        const double mb = median(tb), ms = median(ts);
        const double nb = *std::min_element(tb.begin(), tb.end()), ns = *std::min_element(ts.begin(), ts.end());
        std::printf("batch %lld, 5 alternating rounds x %d iterations (per-round medians): base %.3f ms, "
                    "selected %.3f ms, speedup %.2fx (median of rounds); fastest rounds %.3f / %.3f ms, %.2fx\n",
                    static_cast<long long>(b), fa->iters, mb, ms, mb / ms, nb, ns, nb / ns);
        j["bench"] = {{"batch", b}, {"base_ms", mb}, {"selected_ms", ms}, {"speedup", mb / ms},
                      {"base_min_ms", nb}, {"selected_min_ms", ns}, {"speedup_min", nb / ns}};
      }
    } else if (!fa->out.empty() || fa->eval || fa->bench) {
      throw Error("-o/--eval/--bench need a target (--target, --max-accuracy-loss or --min-speedup)");
    }
    write_json(fa->json_path, j);
  });

  // compare: a base model and others (e.g. selected configurations) timed side by side
  struct CompareArgs {
    std::vector<std::string> models;
    int64_t batch = 64;
    int rounds = 7, iters = 20;
    std::string json_path;
    bool cputime = false;
  };
  auto ca = std::make_shared<CompareArgs>();
  auto* c_cmp = app.add_subcommand(
      "compare", "time models side by side (the first is the reference): interleaved forward by forward, per-layer and end-to-end medians and minimums, speedups");
  c_cmp->add_option("models", ca->models, "model files or zoo names; the first is the reference")->required()->expected(2, 64);
  c_cmp->add_option("--batch", ca->batch, "batch size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_cmp->add_option("--rounds", ca->rounds, "rounds (each a profile_models run of --iters interleaved iterations)")->capture_default_str()->check(CLI::Range(1, 1000));
  c_cmp->add_option("--iters", ca->iters, "iterations per round")->capture_default_str()->check(CLI::Range(1, 100000));
  c_cmp->add_option("--json", ca->json_path, "write the results as JSON");
  c_cmp->add_flag("--cputime", ca->cputime,
                  "time each forward by the calling thread's CPU time (1 thread only): on a loaded machine "
                  "wall time charges a long forward for every preemption it sits through, so ratios "
                  "of wall medians and minimums both skew towards the faster model");
  registry.add(c_cmp, [ca] {
    std::vector<Model> ms;
    for (const auto& f : ca->models) ms.push_back(open_model(f, {}, 0));
    std::vector<Model*> ptr;
    for (Model& m : ms) ptr.push_back(&m);
    const size_t n = ms.size();
    std::vector<std::vector<double>> med(n), mins(n);
    std::vector<std::map<std::string, std::vector<double>>> layer(n);
    if (ca->cputime) {
      check(omp_get_max_threads() == 1, "compare --cputime measures the calling thread: run with --threads 1 / OMP_NUM_THREADS=1");
      Shape sh{ca->batch};
      sh.insert(sh.end(), ms[0].input_shape().begin(), ms[0].input_shape().end());
      Tensor x(sh);
      Rng rng(42);
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(0.0f, 1.0f);
      for (Model& m : ms) m.freeze(true);
      auto cpu_ms = [] {
        timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return 1e3 * static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_nsec);
      };
      for (int r = 0; r < ca->rounds; ++r) {
        std::vector<std::vector<double>> t(n);
        for (int it = 0; it < ca->iters + (r == 0 ? 3 : 1); ++it)
          for (size_t j = 0; j < n; ++j) {
            const size_t i = (j + static_cast<size_t>(it)) % n;
            const double t0 = cpu_ms();
            ms[i].forward(x, false);
            const double dt = cpu_ms() - t0;
            if (it >= (r == 0 ? 3 : 1)) t[i].push_back(dt);
          }
        for (size_t i = 0; i < n; ++i) {
          med[i].push_back(median(t[i]));
          mins[i].push_back(*std::min_element(t[i].begin(), t[i].end()));
        }
      }
      for (Model& m : ms) m.freeze(false);
    }
    for (int r = 0; r < (ca->cputime ? 0 : ca->rounds); ++r) {
      const std::vector<ModelProfile> ps = profile_models(ptr, ca->batch, ca->iters, r == 0 ? 3 : 1);
      for (size_t i = 0; i < n; ++i) {
        med[i].push_back(ps[i].median_ms);
        mins[i].push_back(ps[i].min_ms);
        for (const LayerTime& l : ps[i].layers)
          if (l.type == "conv" || l.type == "fc") layer[i][l.name].push_back(l.median_ms);
      }
    }
    double load[3] = {0, 0, 0};
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
      std::fclose(f);
    }
    std::printf("batch %lld, %d rounds x %d interleaved iterations, %d thread(s), %s, load average %.2f %.2f %.2f\n",
                static_cast<long long>(ca->batch), ca->rounds, ca->iters, omp_get_max_threads(),
                ca->cputime ? "thread CPU time" : "wall time", load[0], load[1], load[2]);
    const double b_med = median(med[0]), b_min = *std::min_element(mins[0].begin(), mins[0].end());
    json out = json::array();
    for (size_t i = 0; i < n; ++i) {
      const double m = median(med[i]), mn = *std::min_element(mins[i].begin(), mins[i].end());
      std::string lay;
      json lj = json::object();
      for (const auto& [name, v] : layer[i]) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " %s %.3f", name.c_str(), median(v));
        lay += buf;
        lj[name] = median(v);
      }
      std::printf("  %-40s median %9.3f ms (%.2fx)  min %9.3f ms (%.2fx)  conv/fc ms:%s\n", ca->models[i].c_str(),
                  m, b_med / m, mn, b_min / mn, lay.c_str());
      out.push_back({{"model", ca->models[i]}, {"median_ms", m}, {"min_ms", mn}, {"speedup_median", b_med / m},
                     {"speedup_min", b_min / mn}, {"layers_median_ms", lj}, {"round_medians_ms", med[i]}});
    }
    write_json(ca->json_path, {{"batch", ca->batch}, {"rounds", ca->rounds}, {"iters", ca->iters},
                               {"clock", ca->cputime ? "thread_cputime" : "wall"},
                               {"threads", omp_get_max_threads()}, {"loadavg", {load[0], load[1], load[2]}},
                               {"models", out}});
  });

  // refine: joint fine-tuning of frontier points, then the precise / 1-point / 2-point picks
  struct RefineArgs {
    std::string dir, out, json_path, losses = "0.2,1,2", points;
    int epochs = 2, lr_step = 0;
    double lr = 0.001, lr_gamma = 0.1, max_loss = 5, distill = 0, temperature = 4;
    int64_t ft_batch = 64, batch = 0;
    int iters = 30, rounds = 3;
    DataOptions data;
    ValidationArgs valid;
  };
  auto ra = std::make_shared<RefineArgs>();
  auto* c_rf = app.add_subcommand(
      "refine", "jointly fine-tune frontier points (all layers), then select the fastest within each accuracy loss and time it side by side with the base");
  c_rf->add_option("opt", ra->dir, "directory written by deftnn optimize")->required();
  c_rf->add_option("--out", ra->out, "write the selected refined models here (refined_<loss>.deft)");
  c_rf->add_option("--max-loss", ra->max_loss, "refine only frontier points losing at most this many points before refining (applies to "
                   "--points only when given)")->capture_default_str()->check(CLI::NonNegativeNumber);
  c_rf->add_option("--points", ra->points, "refine only these frontier points (indices, comma-separated; default: all within --max-loss)");
  c_rf->add_option("--losses", ra->losses, "accuracy losses (points) to select for, against the base")->capture_default_str();
  c_rf->add_option("--finetune-epochs", ra->epochs, "joint fine-tuning epochs")->capture_default_str()->check(CLI::Range(0, 1000));
  c_rf->add_option("--finetune-lr", ra->lr, "joint fine-tuning learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  c_rf->add_option("--finetune-lr-step", ra->lr_step, "multiply the rate by --finetune-lr-gamma every N epochs")->capture_default_str()->check(CLI::NonNegativeNumber);
  c_rf->add_option("--finetune-lr-gamma", ra->lr_gamma, "rate factor")->capture_default_str()->check(CLI::PositiveNumber);
  c_rf->add_option("--distill", ra->distill, "knowledge distillation from the dense base: weight of the soft-target "
                   "loss (0: labels only, 1: the base's outputs only)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c_rf->add_option("--distill-temperature", ra->temperature, "softmax temperature of the distillation")
      ->capture_default_str()->check(CLI::PositiveNumber);
  c_rf->add_option("--finetune-batch", ra->ft_batch, "joint fine-tuning batch size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_rf->add_option("--batch", ra->batch, "timing batch (default: the frontier's)")->check(CLI::Range(1, 1 << 16));
  c_rf->add_option("--iters", ra->iters, "timed iterations per round")->capture_default_str()->check(CLI::Range(1, 100000));
  c_rf->add_option("--rounds", ra->rounds, "timing rounds")->capture_default_str()->check(CLI::Range(1, 1000));
  c_rf->add_option("--json", ra->json_path, "write the refined points and selections as JSON");
  add_data_options(c_rf, ra->data);
  add_validation_options(c_rf, ra->valid, true);
  c_rf->get_option("--limit")->description("fine-tune on only the first N training images (after the held-out ones are taken out)");
  registry.add(c_rf, [ra, c_rf] {
    // Points named with --points are refined whatever their loss, unless --max-loss is given too
    // (the default 5-point filter silently skipped a named point losing 8.7 before refining).
    const double max_loss = !ra->points.empty() && c_rf->get_option("--max-loss")->count() == 0 ? 1e9 : ra->max_loss;
    Optimization opt = load_optimization(ra->dir);
    if (!ra->points.empty()) {
      // Keep only the named points (the frontier is reduced in memory; nothing is saved).
      std::vector<FrontierPoint> keep;
      for (double v : parse_doubles(ra->points, "--points")) {
        const int i = static_cast<int>(v);
        check(i == v && i >= 0 && i < static_cast<int>(opt.frontier.size()),
              "--points: no frontier point " + std::to_string(v));
        keep.push_back(opt.frontier[i]);
      }
      opt.frontier = keep;
    }
    // The split the optimisation validated on, else the one its base model file records.
    HeldOut recorded = opt.validation_split;
    if (recorded.empty()) recorded = read_held_out(load_model_metadata(opt.base_file));
    SelectionData sd = selection_data(opt.base, ra->data, ra->valid, recorded);
    const Dataset& tr = sd.train;
    const Dataset& val = sd.validation;
    const bool val_from_test = sd.held_out.empty();
    Dataset test = data_for(opt.base, ra->data, false, -1);
    TrainConfig tc;
    tc.epochs = ra->epochs;
    tc.lr = ra->lr;
    tc.lr_step = ra->lr_step;
    tc.lr_gamma = ra->lr_gamma;
    tc.batch = ra->ft_batch;
    tc.progress = false;
    const std::vector<double> losses = parse_doubles(ra->losses, "--losses");
    std::printf("refining %s: joint fine-tune on %lld images (%d epoch(s), lr %g), validate on %lld, %d thread(s)\n",
                ra->dir.c_str(), static_cast<long long>(tr.size()), ra->epochs, ra->lr,
                static_cast<long long>(val.size()), omp_get_max_threads());
    const double base_val = evaluate(opt.base, val, 256, false).top1;
    const double base_test = evaluate(opt.base, test, 256, false).top1;
    std::printf("validation: %s; test: %s (%lld images%s)\n", val.name.c_str(), test.name.c_str(),
                static_cast<long long>(test.size()), val_from_test ? ", the first of which are the validation set" : ", never used for selection");
    std::printf("base: validation %.2f%%, test %.2f%%\n", 100 * base_val, 100 * base_test);
    if (ra->distill > 0)
      std::printf("distillation from the base: weight %g, temperature %g\n", ra->distill, ra->temperature);
    std::vector<RefinedPoint> refined = refine_frontier(
        opt, tr, val, tc, max_loss,
        [](const std::string& s) {
          std::printf("%s\n", s.c_str());
          std::fflush(stdout);
        },
        Distillation{ra->distill, ra->temperature});
    json j = {{"dir", ra->dir}, {"epochs", ra->epochs}, {"lr", ra->lr}, {"distill", ra->distill},
              {"distill_temperature", ra->temperature}, {"train_images", tr.size()},
              {"validation_images", val.size()}, {"validation_set", val.name},
              {"validation_from", val_from_test ? "test" : "train"},
              {"base_validation", base_val}, {"base_test", base_test}};
    json pts = json::array();
    for (const auto& r : refined)
      pts.push_back({{"point", r.point}, {"configuration", describe(opt, opt.frontier[r.point])},
                     {"frontier_speedup", opt.frontier[r.point].speedup},
                     {"accuracy_composed", r.accuracy_before}, {"accuracy_refined", r.accuracy}});
    j["refined"] = pts;
    // One interleaved timing of the base and every refined model (thread CPU time when
    // single-threaded), then selections against the base as given (the loss a user sees).
    const int64_t b = ra->batch > 0 ? ra->batch : opt.time_batch;
    const std::vector<double> ms = time_refined(opt, refined, b, ra->iters, ra->rounds);
    const double tb = ms[0];
    std::printf("timing: batch %lld, %d rounds x %d iterations interleaved, medians of %s; base %.3f ms\n",
                static_cast<long long>(b), ra->rounds, ra->iters,
                omp_get_max_threads() == 1 ? "thread CPU time" : "wall time", tb);
    for (size_t i = 0; i < refined.size(); ++i) {
      std::printf("  point %d: %.3f ms, %.2fx, validation %.2f%%\n", refined[i].point, ms[1 + i], tb / ms[1 + i],
                  100 * refined[i].accuracy);
      j["refined"][i]["ms"] = ms[1 + i];
      j["refined"][i]["speedup"] = tb / ms[1 + i];
    }
    j["base_ms"] = tb;
    j["batch"] = b;
    json sel = json::array();
    for (double loss : losses) {
      const int k = select_refined(opt, refined, base_val, loss, ms);
      if (k < 0) {
        std::printf("loss <= %.2f pt: no refined point\n", loss);
        sel.push_back({{"max_loss", loss}, {"point", nullptr}});
        continue;
      }
      const double tk = ms[1 + k];
      const double acc_test = evaluate(refined[k].model, test, 256, false).top1;
      // The validation images are the first of the test set, so the selection has seen them: the
      // test images after them (held out) give the loss without that bias.
      const double nv = static_cast<double>(val.size()), nt = static_cast<double>(test.size());
      const bool has_held = val_from_test && nt > nv;
      const double held = has_held ? (nt * acc_test - nv * refined[k].accuracy) / (nt - nv) : 0;
      const double base_held = has_held ? (nt * base_test - nv * base_val) / (nt - nv) : 0;
      std::printf("loss <= %.2f pt: point %d (%s): validation %.2f%% (base %.2f%%), test %.2f%% (base %.2f%%, loss %.2f pt",
                  loss, refined[k].point, describe(opt, opt.frontier[refined[k].point]).c_str(),
                  100 * refined[k].accuracy, 100 * base_val, 100 * acc_test, 100 * base_test, 100 * (base_test - acc_test));
      if (has_held)
        std::printf("; held-out last %lld: loss %.2f pt", static_cast<long long>(test.size() - val.size()),
                    100 * (base_held - held));
      std::printf("), %.3f ms, speedup %.2fx\n", tk, tb / tk);
      json e = {{"max_loss", loss}, {"point", refined[k].point},
                {"configuration", describe(opt, opt.frontier[refined[k].point])},
                {"validation", refined[k].accuracy}, {"test", acc_test}, {"ms", tk},
                {"base_ms", tb}, {"speedup", tb / tk}, {"batch", b}};
      if (has_held) {
        e["test_held_out"] = held;
        e["base_test_held_out"] = base_held;
      }
      if (!ra->out.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(ra->out, ec);
        char name[64];
        std::snprintf(name, sizeof name, "refined_%g.deft", loss);
        const std::string path = (std::filesystem::path(ra->out) / name).string();
        ModelMetadata meta = {{"sve_configuration", describe(opt, opt.frontier[refined[k].point])},
                              {"sve_optimization", ra->dir}, {"sve_refined_epochs", std::to_string(ra->epochs)}};
        write_held_out(meta, sd.held_out);
        save_model(refined[k].model, path, meta);
        std::printf("  wrote %s\n", path.c_str());
        e["file"] = path;
      }
      sel.push_back(e);
    }
    j["selected"] = sel;
    write_json(ra->json_path, j);
  });

  // prune: the magnitude-pruning baseline (Han et al. 2015, paper §5.8) as a model a user runs
  struct PruneArgs {
    std::string model, out, json_path;
    double density = 0.1, conv_density = -1, fc_density = -1;
    std::vector<std::string> layer_density;
    bool global = false, skip_first_conv = false, skip_last_fc = false;
    int epochs = 2;
    double lr = 0.001;
    int64_t batch = 64;
    uint64_t seed = 1;
    DataOptions data;
  };
  auto pa = std::make_shared<PruneArgs>();
  auto* c_pr = app.add_subcommand(
      "prune", "magnitude pruning (Han et al.), the baseline of synapse vector elimination: zero each "
               "conv/fc layer's smallest weights, retrain with them held at zero, save");
  c_pr->add_option("model", pa->model, "trained model file (.deft or .onnx)")->required();
  c_pr->add_option("-o,--out", pa->out, "where to save the pruned model (.onnx: as ONNX)")->required();
  c_pr->add_option("--density", pa->density, "fraction of each layer's weights kept")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c_pr->add_option("--conv-density", pa->conv_density, "conv layers' density (default: --density)")
      ->check(CLI::Range(0.0, 1.0));
  c_pr->add_option("--fc-density", pa->fc_density, "fc layers' density (default: --density)")
      ->check(CLI::Range(0.0, 1.0));
  c_pr->add_option("--layer", pa->layer_density, "one layer's density, NAME=D (repeatable; wins over the others)");
  c_pr->add_flag("--global", pa->global, "one magnitude threshold over every layer's weights (the density is then the overall one)");
  c_pr->add_flag("--skip-first-conv", pa->skip_first_conv, "leave the first conv dense");
  c_pr->add_flag("--skip-last-fc", pa->skip_last_fc, "leave the last fc dense");
  c_pr->add_option("--retrain-epochs", pa->epochs, "masked retraining epochs on Fashion-MNIST (0: prune only, no data needed)")
      ->capture_default_str()->check(CLI::Range(0, 1000));
  c_pr->add_option("--lr", pa->lr, "retraining learning rate (Han et al.: about a tenth of the original)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  c_pr->add_option("--batch", pa->batch, "retraining batch size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c_pr->add_option("--seed", pa->seed, "shuffling seed")->capture_default_str();
  c_pr->add_option("--json", pa->json_path, "write densities and accuracies as JSON");
  add_data_options(c_pr, pa->data);
  registry.add(c_pr, [pa] {
    Model m = load_any_model(pa->model);
    PruneOptions po;
    po.per_layer = !pa->global;
    po.skip_first_conv = pa->skip_first_conv;
    po.skip_last_fc = pa->skip_last_fc;
    po.conv_density = pa->conv_density;
    po.fc_density = pa->fc_density;
    for (const std::string& spec : pa->layer_density) {
      const size_t eq = spec.find('=');
      check(eq != std::string::npos && eq > 0, "--layer '" + spec + "': expected NAME=DENSITY");
      const std::string name = spec.substr(0, eq);
      const double d = parse_doubles(spec.substr(eq + 1), "--layer " + name)[0];
      check(d >= 0.0 && d <= 1.0, "--layer " + name + ": density must be in [0, 1]");
      bool found = false;
      for (const Node& n : m.nodes()) found = found || n.name == name;
      check(found, "--layer " + name + ": " + pa->model + " has no layer of that name");
      po.layer_density.emplace_back(name, d);
    }
    check(!pa->global || po.layer_density.empty(), "--global and --layer do not combine");
    // Without retraining no data is needed: any model (an ONNX network of another input size)
    // can be pruned, e.g. to time it with the sparse kernels.
    const bool data = pa->epochs > 0;
    const Dataset train = data ? data_for(m, pa->data, true, pa->data.limit) : Dataset{};
    const Dataset test = data ? data_for(m, pa->data, false, pa->data.limit) : Dataset{};
    const EvalResult before = data ? evaluate(m, test, 256, false) : EvalResult{};
    const PruneResult pr = prune_by_magnitude(m, pa->density, po);
    const EvalResult pruned = data ? evaluate(m, test, 256, false) : EvalResult{};
    std::printf("%s: %lld of %lld conv/fc weights kept (%.2f%%)\n%s", pa->model.c_str(),
                static_cast<long long>(pr.kept()), static_cast<long long>(pr.total()),
                100 * pr.density(), pr.summary().c_str());
    if (data)
      std::printf("test top-1 (%lld images): dense %.2f%%, pruned %.2f%%\n",
                  static_cast<long long>(test.size()), 100 * before.top1, 100 * pruned.top1);
    std::fflush(stdout);
    json epochs = json::array();
    EvalResult after = pruned;
    if (data) {
      TrainConfig cfg;
      cfg.epochs = pa->epochs;
      cfg.lr = pa->lr;
      cfg.batch = pa->batch;
      cfg.seed = pa->seed;
      std::printf("retraining %d epoch(s) at lr %g, batch %lld, on %lld images, pruned weights held at zero\n",
                  pa->epochs, pa->lr, static_cast<long long>(pa->batch), static_cast<long long>(train.size()));
      retrain_pruned(m, pr, train, &test, cfg, [&](const EpochStats& st) {
        std::printf("epoch %2d  loss %.4f  train %.2f%%  test top-1 %.2f%%  %.1f s\n", st.epoch,
                    st.train_loss, 100 * st.train_top1, 100 * st.test_top1, st.seconds);
        std::fflush(stdout);
        epochs.push_back({{"epoch", st.epoch}, {"train_loss", st.train_loss}, {"test_top1", st.test_top1}});
      });
      after = evaluate(m, test, 256, false);
      std::printf("test top-1: dense %.2f%%, pruned and retrained %.2f%% (loss %.2f points) at density %.2f%%\n",
                  100 * before.top1, 100 * after.top1, 100 * (before.top1 - after.top1), 100 * pr.density());
    }
    char dens[32];
    std::snprintf(dens, sizeof dens, "%.6f", pr.density());
    if (is_onnx_path(pa->out))
      save_any_model(m, pa->out);   // ONNX: the pruned weights as zeros in dense initialisers
    else
      save_model(m, pa->out, {{"pruned_from", pa->model}, {"pruned_density", dens},
                              {"pruned_retrain_epochs", std::to_string(pa->epochs)}});
    std::printf("wrote %s (run it with the CSR kernels: deftnn --sparse auto|on|off bench %s)\n",
                pa->out.c_str(), pa->out.c_str());
    json layers = json::array();
    for (const LayerMask& l : pr.layers)
      layers.push_back({{"name", l.name}, {"type", l.type}, {"weights", l.total}, {"kept", l.kept},
                        {"density", l.density()}, {"threshold", l.threshold}});
    json j = {{"model", pa->model}, {"out", pa->out}, {"density", pr.density()}, {"layers", layers}};
    if (data) {
      j["test_images"] = test.size();
      j["dense_top1"] = before.top1;
      j["pruned_top1"] = pruned.top1;
      j["retrained_top1"] = after.top1;
      j["epochs"] = epochs;
    }
    write_json(pa->json_path, j);
  });
}

}  // namespace deftnn::cli
