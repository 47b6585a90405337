// The synapse vector elimination optimiser: candidates per <layer, threshold>, fine-tuning with
// every other parameter frozen, measured times, the Pareto frontier over compositions, saving,
// loading and selection (see include/deftnn/optimize.h).
#include "deftnn/optimize.h"
#include "deftnn/sve_calibration.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/io.h"
#include "deftnn/profile.h"
#include "deftnn/rng.h"

namespace deftnn {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool is_gemm_layer(const Node& n) {
  const std::string t = n.layer->type();
  return t == "conv" || t == "fc";
}

int node_index(const Model& m, const std::string& name) {
  const int i = m.find(name);
  check(i >= 0, "no layer named '" + name + "' in the model");
  return i;
}

// The input shape (batch 1) of node i.
Shape node_input(const Model& m, int i) {
  const std::vector<Shape> shapes = m.value_shapes(1);
  const Node& n = m.nodes()[i];
  check(n.inputs.size() == 1, "layer '" + n.name + "' does not have exactly one input");
  return shapes[n.inputs[0]];
}

void copy_params(const Layer& from, Layer& to) {
  for (const Param& p : from.params()) {
    Param* q = to.param(p.name);
    check(q && q->value.shape() == p.value.shape(),
          "cannot copy parameter '" + p.name + "' of a " + from.type() + " layer " +
              shape_str(p.value.shape()));
    q->value = p.value.clone();
    q->trainable = p.trainable;
    q->lr_mult = p.lr_mult;
    q->decay_mult = p.decay_mult;
    if (q->trainable && q->grad.shape() != q->value.shape()) q->grad = Tensor(q->value.shape());
  }
}

// A deep copy of a layer for a given input shape (with batch).
std::unique_ptr<Layer> clone_layer(const Layer& l, const Shape& input) {
  std::unique_ptr<Layer> c = make_layer(l.type(), l.attrs());
  c->infer({input});
  copy_params(l, *c);
  return c;
}

Model copy_model(const Model& m) {
  Model c(m.input_shape());
  for (const Node& n : m.nodes()) {
    c.add(n.name, make_layer(n.layer->type(), n.layer->attrs()), n.inputs);
    copy_params(*n.layer, *c.nodes().back().layer);
  }
  return c;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// The file of candidate `index` (its position in Optimization::candidates) inside the OPT
// directory. Node names of imported ONNX models are paths ("/net/net.0/Conv" from torch.onnx), so
// everything but [A-Za-z0-9._-] becomes '_'; the index keeps names that map alike apart.
std::string candidate_file(const std::string& layer, size_t index) {
  std::string s = "cand_";
  for (const char ch : layer) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '.' || ch == '-' || ch == '_';
    s += ok ? ch : '_';
  }
  return s + "_" + std::to_string(index) + ".deft";
}

double layer_median(const ModelProfile& p, const std::string& name) {
  for (const LayerTime& l : p.layers)
    if (l.name == name) return l.median_ms;
  throw Error("profile has no layer '" + name + "'");
}

// An estimated configuration while building the frontier: additive accuracy loss and time saving.
struct Estimate {
  std::map<std::string, int> choice;
  double loss = 0;     // sum of candidate accuracy losses (fraction)
  double saving = 0;   // sum of candidate time savings (ms)
};

// Keeps estimates not dominated on (loss lower, saving higher).
std::vector<Estimate> prune_estimates(std::vector<Estimate> v) {
  std::sort(v.begin(), v.end(), [](const Estimate& a, const Estimate& b) {
    if (a.loss != b.loss) return a.loss < b.loss;
    return a.saving > b.saving;
  });
  std::vector<Estimate> out;
  double best = -1e300;
  for (auto& e : v)
    if (e.saving > best) {
      best = e.saving;
      out.push_back(std::move(e));
    }
  return out;
}

}  // namespace

std::vector<std::string> eliminable_layers(const Model& model) {
  std::vector<std::string> r;
  for (const Node& n : model.nodes())
    if (is_gemm_layer(n) && !n.layer->attrs().has("retained")) r.push_back(n.name);
  return r;
}

std::vector<std::string> default_elimination_layers(const Model& model) {
  std::vector<std::string> r = eliminable_layers(model);
  if (!r.empty()) r.pop_back();
  return r;
}

void set_layer_elimination(Model& model, const std::string& layer,
                           const std::vector<int64_t>& retained, const Tensor& weight) {
  const int idx = node_index(model, layer);
  Node& node = model.nodes()[idx];
  check(is_gemm_layer(node), "layer '" + layer + "' is a " + node.layer->type() +
                                 "; synapse vector elimination applies to conv and fc layers");
  check(!node.layer->attrs().has("retained"), "layer '" + layer + "' is already eliminated");
  Attrs a = node.layer->attrs();
  a.set("retained", retained);
  std::unique_ptr<Layer> nl = make_layer(node.layer->type(), a);
  nl->infer({node_input(model, idx)});   // checks the list (range, repeats, count per group)
  const Param* nw = nl->param("weight");
  check(nw != nullptr && nw->value.shape() == weight.shape(),
        "layer '" + layer + "': weight " + shape_str(weight.shape()) + " does not match " +
            shape_str(nw ? nw->value.shape() : Shape{}) + " for " + std::to_string(retained.size()) +
            " retained rows");
  for (Param& q : nl->params()) {
    const Param* p = node.layer->param(q.name);
    if (!p) continue;
    q.value = q.name == "weight" ? weight.clone() : p->value.clone();
    q.trainable = p->trainable;
    q.lr_mult = p->lr_mult;
    q.decay_mult = p->decay_mult;
  }
  node.layer = std::move(nl);
}

void eliminate_evenly(Model& model, const std::string& layer, double fraction, int64_t align) {
  const int idx = node_index(model, layer);
  Node& node = model.nodes()[idx];
  check(is_gemm_layer(node) && !node.layer->attrs().has("retained"),
        "layer '" + layer + "' is not a dense conv or fc layer");
  check(fraction > 0 && fraction <= 1 && align >= 1, "eliminate_evenly: fraction must be in (0, 1]");
  const Tensor& w = node.layer->param("weight")->value;
  const int64_t groups = node.layer->attrs().get_int("groups", 1), O = w.dim(0), K = w.numel() / O;
  const int64_t M = O / groups;
  const int64_t want = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(fraction * K)));
  const int64_t kept = std::min(K, (want + align - 1) / align * align);
  std::vector<int64_t> retained;
  Tensor wt({O, kept});
  const float scale = static_cast<float>(K) / static_cast<float>(kept);   // Eq. 5
  for (int64_t g = 0; g < groups; ++g) {
    // floor(p K / K') is strictly increasing in p when K' <= K: kept distinct rows, evenly spread.
    for (int64_t p = 0; p < kept; ++p) retained.push_back(p * K / kept);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t p = 0; p < kept; ++p)
        wt[(g * M + r) * kept + p] = scale * w[(g * M + r) * K + retained[static_cast<size_t>(g * kept + p)]];
  }
  set_layer_elimination(model, layer, retained, wt);
}

LayerElimination eliminate_layer(Model& model, const std::string& layer,
                                 const SynapseSearchOptions& options) {
  const int idx = node_index(model, layer);
  Node& node = model.nodes()[idx];
  check(is_gemm_layer(node), "layer '" + layer + "' is a " + node.layer->type() +
                                 "; synapse vector elimination applies to conv and fc layers");
  check(!node.layer->attrs().has("retained"), "layer '" + layer + "' is already eliminated");
  const Param* wp = node.layer->param("weight");
  check(wp != nullptr, "layer '" + layer + "' has no weight");
  const Tensor& W = wp->value;
  const int64_t groups = node.layer->type() == "conv" ? node.layer->attrs().get_int("groups", 1) : 1;
  const LayerSynapsePlan plan = plan_layer(W, groups, options);
  const int64_t M = plan.M, K = plan.K;

  // Every group keeps the same count: pad short groups with their largest-norm discarded vectors.
  int64_t kmax = 0;
  for (const auto& s : plan.search) kmax = std::max(kmax, s.retained_count());
  LayerElimination e;
  e.layer = layer;
  e.correlation_threshold = options.correlation_threshold;
  e.groups = groups;
  e.K = K;
  e.kept = kmax;
  Tensor Wt({groups * M, kmax});
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<char> flags = plan.search[g].retained;
    int64_t have = plan.search[g].retained_count();
    const float* Wg = W.data() + g * M * K;
    if (have < kmax) {
      std::vector<std::pair<double, int64_t>> norms;
      for (int64_t k = 0; k < K; ++k) {
        if (flags[k]) continue;
        double s = 0;
        for (int64_t m = 0; m < M; ++m) s += static_cast<double>(Wg[m * K + k]) * Wg[m * K + k];
        norms.emplace_back(-s, k);   // largest norm first, ties -> lowest index
      }
      std::sort(norms.begin(), norms.end());
      for (size_t i = 0; have < kmax; ++i, ++have) flags[norms[i].second] = 1;
    }
    const SynapsePlan p = plan_elimination(flags);
    const Tensor t = truncate_weights(Wg, M, K, K, p);
    std::copy(t.data(), t.data() + t.numel(), Wt.data() + g * M * kmax);
    for (int32_t r : p.retained) e.retained.push_back(r);
  }

  set_layer_elimination(model, layer, e.retained, Wt);
  return e;
}

void train_distilled(Model& student, Model& teacher, const Dataset& train_set, const TrainConfig& cfg,
                     const Distillation& distill) {
  check(distill.weight >= 0 && distill.weight <= 1, "distillation weight must be in [0, 1]");
  check(distill.temperature > 0, "distillation temperature must be positive");
  check(cfg.batch > 0 && cfg.lr > 0, "train_distilled: batch and learning rate must be positive");
  const int64_t n = static_cast<int64_t>(train_set.labels.size());
  check(n > 0, "train_distilled: the training set is empty");
  Rng rng(cfg.seed);
  Sgd sgd(cfg.momentum, cfg.weight_decay);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Tensor x, dlogits;
  std::vector<int32_t> y;
  const bool was_frozen = teacher.frozen();
  teacher.freeze(true);
  const double w = distill.weight, T = distill.temperature;
  std::vector<double> ps, pt;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    const double lr = cfg.lr * (cfg.lr_step > 0 ? std::pow(cfg.lr_gamma, (epoch - 1) / cfg.lr_step) : 1.0);
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    for (int64_t b = 0; b < n; b += cfg.batch) {
      const int64_t e = std::min(n, b + cfg.batch), nb = e - b;
      gather_batch(train_set, order, b, e, x, y);
      const Tensor t = teacher.forward(x, false);
      const Tensor& z = student.forward(x, true, &rng);
      const double loss = softmax_cross_entropy(z, y.data(), &dlogits);
      if (!std::isfinite(loss))
        throw Error("fine-tuning diverged at epoch " + std::to_string(epoch) + "; lower the learning rate");
      const int64_t c = z.dim(1);
      ps.resize(static_cast<size_t>(c));
      pt.resize(static_cast<size_t>(c));
      // d/dz of T^2 * KL(p_t || p_s) with p = softmax(. / T), averaged over the batch:
      // T * (p_s - p_t) / nb.
      auto soft = [&](const float* v, std::vector<double>& p) {
        const double mx = *std::max_element(v, v + c) / T;
        double sum = 0;
        for (int64_t k = 0; k < c; ++k) sum += p[k] = std::exp(v[k] / T - mx);
        for (int64_t k = 0; k < c; ++k) p[k] /= sum;
      };
      for (int64_t i = 0; i < nb; ++i) {
        soft(z.data() + i * c, ps);
        soft(t.data() + i * c, pt);
        float* d = dlogits.data() + i * c;
        for (int64_t k = 0; k < c; ++k)
          d[k] = static_cast<float>((1 - w) * d[k] + w * T * (ps[k] - pt[k]) / static_cast<double>(nb));
      }
      student.zero_grad();
      student.backward(dlogits, &rng);
      sgd.step(student, lr);
    }
  }
  teacher.freeze(was_frozen);
}

Model finetune_configuration(const Optimization& opt, const std::map<std::string, int>& choice,
                             const Dataset& train_set, const TrainConfig& config,
                             const Distillation& distill) {
  // compose() keeps the base's trainable flags (a frozen constant stays frozen) and the
  // candidates' own, so every layer the base trains is trained here.
  Model m = compose(opt, choice);
  if (config.epochs > 0) {
    if (distill.weight > 0) {
      Model teacher = copy_model(opt.base);
      train_distilled(m, teacher, train_set, config, distill);
    } else {
      train(m, train_set, nullptr, config);
    }
  }
  return m;
}

std::vector<RefinedPoint> refine_frontier(const Optimization& opt, const Dataset& train_set,
                                          const Dataset& validation, const TrainConfig& config,
                                          double max_loss,
                                          const std::function<void(const std::string&)>& progress,
                                          const Distillation& distill) {
  std::vector<RefinedPoint> out;
  for (size_t i = 0; i < opt.frontier.size(); ++i) {
    const FrontierPoint& p = opt.frontier[i];
    if (100 * (opt.base_accuracy - p.accuracy) > max_loss + 1e-9) continue;
    RefinedPoint r;
    r.point = static_cast<int>(i);
    r.accuracy_before = p.accuracy;
    r.model = finetune_configuration(opt, p.choice, train_set, config, distill);
    r.accuracy = evaluate(r.model, validation, 256, false).top1;
    if (progress) {
      std::string desc;
      for (const auto& [l, ci] : p.choice)
        if (ci >= 0)
          desc += fmt(" %s@%.2f(K'=%lld)", l.c_str(), opt.candidates[ci].elimination.correlation_threshold,
                      static_cast<long long>(opt.candidates[ci].elimination.kept));
      progress(fmt("point %zu: %.2fx, top-1 %.2f%% composed -> %.2f%% jointly fine-tuned (base %.2f%%)%s", i,
                   p.speedup, 100 * p.accuracy, 100 * r.accuracy, 100 * opt.base_accuracy,
                   desc.empty() ? " dense (control)" : desc.c_str()));
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<double> time_models(const std::vector<Model*>& models, int64_t batch, int iterations,
                                int rounds) {
  check(!models.empty() && batch >= 1 && iterations >= 1 && rounds >= 1, "time_models: nothing to time");
  const bool cpu = omp_get_max_threads() == 1;
  const size_t n = models.size();
  Shape sh{batch};
  sh.insert(sh.end(), models[0]->input_shape().begin(), models[0]->input_shape().end());
  Tensor x(sh);
  Rng rng(42);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(0.0f, 1.0f);
  std::vector<bool> was(n);
  for (size_t i = 0; i < n; ++i) {
    check(models[i]->input_shape() == models[0]->input_shape(), "time_models: the models need one input shape");
    was[i] = models[i]->frozen();
    models[i]->freeze(true);
  }
  auto now_ms = [cpu] {
    timespec t;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return 1e3 * static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_nsec);
  };
  std::vector<std::vector<double>> t(n);
  const int warmup = 2;
  for (int it = 0; it < warmup + rounds * iterations; ++it)
    for (size_t j = 0; j < n; ++j) {
      const size_t i = (j + static_cast<size_t>(it)) % n;
      const double t0 = now_ms();
      models[i]->forward(x, false);
      const double dt = now_ms() - t0;
      if (it >= warmup) t[i].push_back(dt);
    }
  std::vector<double> out;
  for (size_t i = 0; i < n; ++i) {
    models[i]->freeze(was[i]);
    out.push_back(median(t[i]));
  }
  return out;
}

std::vector<double> time_refined(Optimization& opt, std::vector<RefinedPoint>& refined, int64_t batch,
                                 int iterations, int rounds) {
  std::vector<Model*> ms{&opt.base};
  for (RefinedPoint& r : refined) ms.push_back(&r.model);
  return time_models(ms, batch, iterations, rounds);
}

int select_refined(const Optimization& opt, const std::vector<RefinedPoint>& refined,
                   double reference_accuracy, double max_loss, const std::vector<double>& ms) {
  check(ms.empty() || ms.size() == refined.size() + 1, "select_refined: one time per refined point plus the base");
  auto speed = [&](size_t i) { return ms.empty() ? opt.frontier[refined[i].point].ms : ms[1 + i]; };
  int best = -1;
  for (size_t i = 0; i < refined.size(); ++i) {
    const RefinedPoint& r = refined[i];
    if (r.accuracy < reference_accuracy - max_loss / 100.0 - 1e-12) continue;
    if (best < 0 || speed(i) < speed(static_cast<size_t>(best))) best = static_cast<int>(i);
  }
  return best;
}

std::vector<FrontierPoint> pareto_frontier(std::vector<FrontierPoint> points) {
  std::vector<FrontierPoint> out;
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j) {
      if (i == j) continue;
      const auto& a = points[j];
      const auto& b = points[i];
      const bool ge = a.accuracy >= b.accuracy && a.ms <= b.ms;
      const bool strict = a.accuracy > b.accuracy || a.ms < b.ms;
      // An exact duplicate is dominated by the earlier one only.
      if (ge && (strict || j < i)) dominated = true;
    }
    if (!dominated) out.push_back(points[i]);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const FrontierPoint& a, const FrontierPoint& b) { return a.ms > b.ms; });
  return out;
}

Model compose(const Optimization& opt, const std::map<std::string, int>& choice) {
  Model m = copy_model(opt.base);
  for (const auto& [layer, ci] : choice) {
    if (ci < 0) continue;
    check(ci < static_cast<int>(opt.candidates.size()),
          "configuration names candidate " + std::to_string(ci) + " of " +
              std::to_string(opt.candidates.size()));
    const Candidate& c = opt.candidates[ci];
    check(c.elimination.layer == layer, "candidate " + std::to_string(ci) + " is for layer '" +
                                            c.elimination.layer + "', not '" + layer + "'");
    check(c.layer != nullptr, "candidate " + std::to_string(ci) + " has no layer loaded");
    const int idx = node_index(m, layer);
    m.nodes()[idx].layer = clone_layer(*c.layer, node_input(m, idx));
  }
  m.output_shape(1);   // re-infers the graph: throws naming the node if a swap does not fit
  return m;
}

Optimization optimize(const Model& base, const Dataset& train_set, const Dataset& validation,
                      const OptimizeOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  check(!o.thresholds.empty(), "optimize: no correlation thresholds given");
  check(o.time_batch >= 1 && o.time_iterations >= 1, "optimize: timing batch and iterations must be positive");
  Optimization opt;
  opt.base = copy_model(base);
  opt.time_batch = o.time_batch;
  opt.validation = validation.name + " (" + std::to_string(validation.size()) + " images)";
  opt.layers = o.layers.empty() ? default_elimination_layers(base) : o.layers;
  check(!opt.layers.empty(), "optimize: the model has no conv / fc layer to eliminate");
  for (const auto& l : opt.layers) {
    const Node& n = base.nodes()[node_index(base, l)];
    check(is_gemm_layer(n) && !n.layer->attrs().has("retained"),
          "optimize: layer '" + l + "' is not a dense conv / fc layer");
  }
  for (const auto& [l, ts] : o.layer_thresholds) {
    check(std::find(opt.layers.begin(), opt.layers.end(), l) != opt.layers.end(),
          "optimize: thresholds given for layer '" + l + "', which is not among the layers optimised");
    check(!ts.empty(), "optimize: no correlation thresholds given for layer '" + l + "'");
  }

  opt.base_accuracy = evaluate(opt.base, validation, o.eval_batch, false).top1;
  say(fmt("base: validation top-1 %.2f%% on %s", 100 * opt.base_accuracy, opt.validation.c_str()));

  for (const std::string& lname : opt.layers) {
    std::set<std::vector<int64_t>> seen;
    const auto own = o.layer_thresholds.find(lname);
    std::vector<double> thresholds = own != o.layer_thresholds.end() ? own->second : o.thresholds;
    std::sort(thresholds.rbegin(), thresholds.rend());   // most retained first
    for (const double alpha : thresholds) {
      Model m = copy_model(opt.base);
      SynapseSearchOptions so;
      so.correlation_threshold = alpha;
      so.absolute = o.absolute;
      so.align = o.align;
      LayerElimination e = eliminate_layer(m, lname, so);
      const bool refit = !o.refit_images.empty() && e.groups == 1 && e.kept < e.K;
      if (refit) refit_eliminated_layer(m, opt.base, lname, o.refit_images);
      const std::string head = fmt("%s alpha %.2f: K' %lld/%lld%s", lname.c_str(), alpha,
                                   static_cast<long long>(e.kept), static_cast<long long>(e.K),
                                   refit ? " (least-squares refit)" : "");
      if (e.kept == e.K) {
        say(head + " (nothing eliminated, skipped)");
        continue;
      }
      if (!seen.insert(e.retained).second) {
        say(head + " (same vectors as a higher threshold, skipped)");
        continue;
      }
      Candidate c;
      c.accuracy_searched = evaluate(m, validation, o.eval_batch, false).top1;
      // Fine-tune the eliminated layer only: everything else frozen, so candidates compose.
      const int idx = node_index(m, lname);
      for (size_t i = 0; i < m.nodes().size(); ++i)
        if (static_cast<int>(i) != idx)
          for (Param& p : m.nodes()[i].layer->params()) p.trainable = false;
      std::vector<Tensor> searched;
      for (const Param& p : m.nodes()[idx].layer->params()) searched.push_back(p.value.clone());
      if (o.finetune.epochs > 0) train(m, train_set, nullptr, o.finetune);
      c.accuracy = evaluate(m, validation, o.eval_batch, false).top1;
      bool reverted = false;
      if (c.accuracy < c.accuracy_searched) {
        // Fine-tuning made the candidate worse (it happens after the least-squares refit, which
        // already fits the dense layer's output): keep the searched weights.
        std::vector<Param>& ps = m.nodes()[idx].layer->params();
        for (size_t j = 0; j < ps.size(); ++j) ps[j].value = searched[j];
        m.nodes()[idx].layer->invalidate();
        c.accuracy = c.accuracy_searched;
        reverted = true;
      }
      // Time: dense and eliminated interleaved forward by forward (profile_models), medians.
      // Separate runs, even alternating, swung several-fold on the shared 2-core machine (a
      // 472/500 candidate "4x faster" than dense); interleaving exposes both to the same load.
      {
        Model& b = opt.base;
        const std::vector<ModelProfile> ps = profile_models({&b, &m}, o.time_batch, o.time_iterations, 2);
        c.dense_layer_ms = layer_median(ps[0], lname);
        c.layer_ms = layer_median(ps[1], lname);
        const std::vector<double> t = time_models({&b, &m}, o.time_batch, o.time_iterations);
        c.base_model_ms = t[0];
        c.model_ms = t[1];
      }
      c.layer = clone_layer(*m.nodes()[idx].layer, node_input(m, idx));
      c.file = candidate_file(lname, opt.candidates.size());
      c.elimination = std::move(e);
      say(head + fmt(", top-1 %.2f%% searched -> %.2f%% %s (base %.2f%%), layer %.3f ms vs dense %.3f ms (%.2fx), "
                     "model %.3f ms vs %.3f ms (%.2fx)",
                     100 * c.accuracy_searched, 100 * c.accuracy,
                     reverted ? "(fine-tuning lowered it: searched weights kept)" : "fine-tuned",
                     100 * opt.base_accuracy,
                     c.layer_ms, c.dense_layer_ms, c.dense_layer_ms / std::max(c.layer_ms, 1e-9),
                     c.model_ms, c.base_model_ms, c.base_model_ms / std::max(c.model_ms, 1e-9)));
      opt.candidates.push_back(std::move(c));
    }
  }

  // Estimated frontier over compositions (additive loss and saving), merged layer by layer.
  std::vector<Estimate> est{Estimate{}};
  for (const std::string& lname : opt.layers) {
    std::vector<Estimate> next;
    for (const Estimate& e : est) {
      Estimate d = e;
      d.choice[lname] = -1;
      next.push_back(d);
      for (size_t ci = 0; ci < opt.candidates.size(); ++ci) {
        const Candidate& c = opt.candidates[ci];
        if (c.elimination.layer != lname) continue;
        Estimate n = e;
        n.choice[lname] = static_cast<int>(ci);
        n.loss += opt.base_accuracy - c.accuracy;
        n.saving += c.base_model_ms > 0 ? c.base_model_ms - c.model_ms : c.dense_layer_ms - c.layer_ms;
        next.push_back(std::move(n));
      }
    }
    est = prune_estimates(std::move(next));
  }
  // Evaluate up to max_evaluated of them, spread evenly (always the first and the last).
  std::vector<size_t> pick;
  const size_t n = est.size(), cap = static_cast<size_t>(std::max(2, o.max_evaluated));
  if (n <= cap) {
    for (size_t i = 0; i < n; ++i) pick.push_back(i);
  } else {
    for (size_t k = 0; k < cap; ++k) pick.push_back(k * (n - 1) / (cap - 1));
    pick.erase(std::unique(pick.begin(), pick.end()), pick.end());
  }
  // The all-dense configuration is always measured (it is the speedup reference).
  std::map<std::string, int> dense_choice;
  for (const auto& l : opt.layers) dense_choice[l] = -1;
  std::vector<std::map<std::string, int>> configs{dense_choice};
  for (size_t i : pick)
    if (est[i].choice != dense_choice) configs.push_back(est[i].choice);
  say(fmt("frontier: %zu estimated Pareto configurations, measuring %zu", n, configs.size()));
  // Every configuration and the base are timed in ONE interleaved run (time_models: each
  // iteration runs every model once, the first rotating), so all see the same machine; a
  // configuration's speedup is the base's median over its median from that run.
  std::vector<FrontierPoint> points;
  std::vector<Model> composed;
  composed.reserve(configs.size());
  for (const auto& ch : configs) {
    composed.push_back(compose(opt, ch));
    FrontierPoint p;
    p.choice = ch;
    p.accuracy = evaluate(composed.back(), validation, o.eval_batch, false).top1;
    points.push_back(std::move(p));
  }
  {
    std::vector<Model*> ms;
    for (Model& m : composed) ms.push_back(&m);   // configs[0] is the all-dense base
    const std::vector<double> t = time_models(ms, o.time_batch, o.time_iterations);
    opt.base_ms = t[0];
    for (size_t i = 0; i < points.size(); ++i) {
      points[i].ms = t[i];
      points[i].speedup = i == 0 ? 1.0 : opt.base_ms / std::max(t[i], 1e-12);
    }
  }
  opt.frontier = pareto_frontier(points);
  for (const auto& p : opt.frontier) {
    std::string desc;
    for (const auto& [l, ci] : p.choice)
      if (ci >= 0)
        desc += fmt(" %s@%.2f", l.c_str(), opt.candidates[ci].elimination.correlation_threshold);
    say(fmt("  top-1 %.2f%%  %.3f ms  %.2fx %s", 100 * p.accuracy, p.ms, p.speedup,
            desc.empty() ? " (dense)" : desc.c_str()));
  }
  return opt;
}

SelectTarget parse_target(const std::string& s) {
  const auto eq = s.find('=');
  SelectTarget t;
  const std::string bad = "target '" + s + "': expected max-loss=POINTS or min-speedup=X (e.g. max-loss=0.5)";
  check(eq != std::string::npos, bad);
  const std::string key = s.substr(0, eq), val = s.substr(eq + 1);
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(val, &used);
    check(used == val.size() && std::isfinite(v) && v >= 0, bad);
  } catch (const std::exception&) {
    throw Error(bad);
  }
  if (key == "max-loss" || key == "max-accuracy-loss")
    t.max_accuracy_loss = v;
  else if (key == "min-speedup")
    t.min_speedup = v;
  else
    throw Error(bad);
  return t;
}

int select_point(const Optimization& opt, const SelectTarget& t) {
  check(!opt.frontier.empty(), "the frontier is empty");
  check((t.max_accuracy_loss >= 0) != (t.min_speedup >= 0),
        "give exactly one target: a maximum accuracy loss or a minimum speedup");
  int best = -1;
  const int n = static_cast<int>(opt.frontier.size());
  if (t.max_accuracy_loss >= 0) {
    const double floor = opt.base_accuracy - t.max_accuracy_loss / 100.0 - 1e-12;
    for (int i = 0; i < n; ++i) {
      const auto& p = opt.frontier[i];
      if (p.accuracy >= floor && (best < 0 || p.ms < opt.frontier[best].ms)) best = i;
    }
    if (best < 0) {   // nothing within the loss: the most accurate point
      for (int i = 0; i < n; ++i)
        if (best < 0 || opt.frontier[i].accuracy > opt.frontier[best].accuracy) best = i;
    }
  } else {
    for (int i = 0; i < n; ++i) {
      const auto& p = opt.frontier[i];
      if (p.speedup + 1e-12 < t.min_speedup) continue;
      if (best < 0 || p.accuracy > opt.frontier[best].accuracy ||
          (p.accuracy == opt.frontier[best].accuracy && p.ms < opt.frontier[best].ms))
        best = i;
    }
    if (best < 0)
      for (int i = 0; i < n; ++i)
        if (best < 0 || opt.frontier[i].ms < opt.frontier[best].ms) best = i;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Saving and loading
// ---------------------------------------------------------------------------------------------

void save_optimization(const Optimization& opt, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec && fs::is_directory(dir), "cannot create directory '" + dir + "'");
  save_model(opt.base, (fs::path(dir) / "base.deft").string(), {{"role", "sve base model"}});
  json cands = json::array();
  std::set<std::string> files;
  for (size_t i = 0; i < opt.candidates.size(); ++i) {
    const Candidate& c = opt.candidates[i];
    const LayerElimination& e = c.elimination;
    check(c.layer != nullptr, "candidate " + std::to_string(i) + " has no layer");
    const int idx = node_index(opt.base, e.layer);
    const Shape in = node_input(opt.base, idx);
    Model cm(Shape(in.begin() + 1, in.end()));
    cm.add(e.layer, clone_layer(*c.layer, in));
    const std::string file = !c.file.empty() ? c.file : candidate_file(e.layer, i);
    check(file.find('/') == std::string::npos && file != "base.deft" && file != "frontier.json" &&
              files.insert(file).second,
          "candidate " + std::to_string(i) + " has a bad or repeated file name '" + file + "'");
    save_model(cm, (fs::path(dir) / file).string(),
               {{"role", "sve candidate"}, {"layer", e.layer},
                {"correlation_threshold", fmt("%.17g", e.correlation_threshold)}});
    cands.push_back({{"layer", e.layer}, {"correlation_threshold", e.correlation_threshold},
                     {"groups", e.groups}, {"K", e.K}, {"kept", e.kept},
                     {"accuracy_searched", c.accuracy_searched}, {"accuracy", c.accuracy},
                     {"layer_ms", c.layer_ms}, {"dense_layer_ms", c.dense_layer_ms},
                     {"model_ms", c.model_ms}, {"base_model_ms", c.base_model_ms},
                     {"file", file}});
  }
  json front = json::array();
  for (const auto& p : opt.frontier) {
    json ch = json::object();
    for (const auto& [l, ci] : p.choice) ch[l] = ci;
    front.push_back({{"choice", ch}, {"accuracy", p.accuracy}, {"ms", p.ms}, {"speedup", p.speedup}});
  }
  json j = {{"format", "deftnn-sve-optimization"}, {"version", 1},
            {"base", "base.deft"}, {"layers", opt.layers},
            {"base_accuracy", opt.base_accuracy}, {"base_ms", opt.base_ms},
            {"time_batch", opt.time_batch}, {"validation", opt.validation},
            {"candidates", cands}, {"frontier", front}};
  if (!opt.validation_split.empty())
    j["validation_split"] = {{"held_out", opt.validation_split.held_out},
                             {"of", opt.validation_split.total}, {"seed", opt.validation_split.seed}};
  const std::string path = (fs::path(dir) / "frontier.json").string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    check(static_cast<bool>(f), "cannot write '" + path + "'");
    f << j.dump(2) << "\n";
    check(static_cast<bool>(f), "cannot write '" + path + "'");
  }
  check(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot write '" + path + "'");
}

Optimization load_optimization(const std::string& dir) {
  const std::string path = (fs::path(dir) / "frontier.json").string();
  std::ifstream f(path);
  check(static_cast<bool>(f), "'" + path + "': cannot open (is '" + dir +
                                  "' a directory written by deftnn optimize?)");
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw Error("'" + path + "': not valid JSON (" + std::string(e.what()) + ")");
  }
  Optimization opt;
  try {
    check(j.at("format").get<std::string>() == "deftnn-sve-optimization" && j.at("version") == 1,
          "not a deftnn optimisation result (format/version)");
    opt.base_file = (fs::path(dir) / j.at("base").get<std::string>()).string();
    opt.layers = j.at("layers").get<std::vector<std::string>>();
    opt.base_accuracy = j.at("base_accuracy").get<double>();
    opt.base_ms = j.at("base_ms").get<double>();
    opt.time_batch = j.at("time_batch").get<int64_t>();
    opt.validation = j.at("validation").get<std::string>();
    if (j.contains("validation_split")) {
      const json& vs = j.at("validation_split");
      opt.validation_split.held_out = vs.at("held_out").get<int64_t>();
      opt.validation_split.total = vs.at("of").get<int64_t>();
      opt.validation_split.seed = vs.at("seed").get<uint64_t>();
      check(opt.validation_split.held_out >= 1 &&
                opt.validation_split.held_out <= opt.validation_split.total / 2,
            "validation_split: holds out " + std::to_string(opt.validation_split.held_out) + " of " +
                std::to_string(opt.validation_split.total));
    }
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  } catch (const std::exception& e) {
    throw Error("'" + path + "': missing or malformed field (" + std::string(e.what()) + ")");
  }
  opt.base = load_model(opt.base_file);
  const json& cands = j.at("candidates");
  for (size_t i = 0; i < cands.size(); ++i) {
    const json& cj = cands[i];
    Candidate c;
    std::string file;
    try {
      LayerElimination& e = c.elimination;
      e.layer = cj.at("layer").get<std::string>();
      e.correlation_threshold = cj.at("correlation_threshold").get<double>();
      e.groups = cj.at("groups").get<int64_t>();
      e.K = cj.at("K").get<int64_t>();
      e.kept = cj.at("kept").get<int64_t>();
      c.accuracy_searched = cj.at("accuracy_searched").get<double>();
      c.accuracy = cj.at("accuracy").get<double>();
      c.layer_ms = cj.at("layer_ms").get<double>();
      c.dense_layer_ms = cj.at("dense_layer_ms").get<double>();
      c.model_ms = cj.value("model_ms", 0.0);
      c.base_model_ms = cj.value("base_model_ms", 0.0);
      c.file = file = cj.at("file").get<std::string>();
    } catch (const std::exception& e) {
      throw Error("'" + path + "': candidate " + std::to_string(i) + ": missing or malformed field (" +
                  e.what() + ")");
    }
    const std::string cpath = (fs::path(dir) / file).string();
    Model cm = load_model(cpath);
    try {
      check(cm.nodes().size() == 1 && cm.nodes()[0].name == c.elimination.layer,
            "expected one layer named '" + c.elimination.layer + "'");
      const int idx = node_index(opt.base, c.elimination.layer);
      const Shape in = node_input(opt.base, idx);
      check(Shape(in.begin() + 1, in.end()) == cm.input_shape(),
            "its input " + shape_str(cm.input_shape()) + " does not match the base model's " +
                shape_str(Shape(in.begin() + 1, in.end())));
      c.layer = std::move(cm.nodes()[0].layer);
      check(c.layer->attrs().has("retained"), "the layer is not eliminated (no 'retained')");
      c.elimination.retained = c.layer->attrs().get_ints("retained");
    } catch (const Error& e) {
      throw Error("'" + cpath + "': " + e.what());
    }
    opt.candidates.push_back(std::move(c));
  }
  try {
    for (const json& pj : j.at("frontier")) {
      FrontierPoint p;
      for (const auto& [l, ci] : pj.at("choice").items()) {
        const int v = ci.get<int>();
        check(v >= -1 && v < static_cast<int>(opt.candidates.size()) &&
                  (v < 0 || opt.candidates[v].elimination.layer == l),
              "frontier point names candidate " + std::to_string(v) + " for layer '" + l + "'");
        p.choice[l] = v;
      }
      p.accuracy = pj.at("accuracy").get<double>();
      p.ms = pj.at("ms").get<double>();
      p.speedup = pj.at("speedup").get<double>();
      opt.frontier.push_back(std::move(p));
    }
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  } catch (const std::exception& e) {
    throw Error("'" + path + "': malformed frontier (" + std::string(e.what()) + ")");
  }
  return opt;
}

}  // namespace deftnn
