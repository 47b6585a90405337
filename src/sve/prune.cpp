// Magnitude network pruning (Han et al. 2015), the baseline of the paper's §5.8: it lives beside
// synapse vector elimination so that the two are compared on the same models. Pruning removes
// individual weights wherever they are small, so the matrices stay M x K with scattered zeros;
// synapse vector elimination removes whole columns and keeps them dense (§2.1, Fig. 1).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <unistd.h>

#include "deftnn/error.h"
#include "deftnn/prune.h"

namespace deftnn {

namespace {

bool prunable(const Node& n) {
  const std::string t = n.layer->type();
  return (t == "conv" || t == "fc") && n.layer->param("weight") != nullptr;
}

void check_density(double d, const std::string& what) {
  check(d >= 0.0 && d <= 1.0 && std::isfinite(d),
        "prune_by_magnitude: " + what + " density must be in [0, 1], got " + std::to_string(d));
}

// Indices of `n` weights ordered by |w| descending, ties by index ascending: a strict total
// order, so the selection does not depend on the sort algorithm.
struct ByMagnitude {
  const float* w;
  bool operator()(int64_t a, int64_t b) const {
    const float fa = std::fabs(w[a]), fb = std::fabs(w[b]);
    return fa != fb ? fa > fb : a < b;
  }
};

// Marks the `kept` largest weights of w[0..n) in keep; returns the smallest |w| kept.
float select_largest(const float* w, int64_t n, int64_t kept, std::vector<uint8_t>& keep) {
  keep.assign(static_cast<size_t>(n), 0);
  if (kept <= 0) return 0.0f;
  if (kept >= n) {
    std::fill(keep.begin(), keep.end(), 1);
    float mn = n ? std::fabs(w[0]) : 0.0f;
    for (int64_t i = 0; i < n; ++i) mn = std::min(mn, std::fabs(w[i]));
    return mn;
  }
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::nth_element(idx.begin(), idx.begin() + (kept - 1), idx.end(), ByMagnitude{w});
  const int64_t pivot = idx[kept - 1];
  // Everything ordered before the pivot, and the pivot itself, is kept: exactly `kept` entries.
  const ByMagnitude before{w};
  for (int64_t i = 0; i < n; ++i)
    if (i == pivot || before(i, pivot)) keep[i] = 1;
  return std::fabs(w[pivot]);
}

int64_t kept_count(double density, int64_t n) {
  return std::clamp<int64_t>(std::llround(density * static_cast<double>(n)), 0, n);
}

}  // namespace

int64_t PruneResult::total() const {
  int64_t s = 0;
  for (const auto& l : layers) s += l.total;
  return s;
}
int64_t PruneResult::kept() const {
  int64_t s = 0;
  for (const auto& l : layers) s += l.kept;
  return s;
}
double PruneResult::density() const {
  return total() ? static_cast<double>(kept()) / static_cast<double>(total()) : 0.0;
}

std::string PruneResult::summary() const {
  std::string s;
  char line[256];
  for (const auto& l : layers) {
    std::snprintf(line, sizeof line, "%-12s %-5s %10lld weights  %10lld kept  density %6.2f%%  |w| >= %.4g\n",
                  l.name.c_str(), l.type.c_str(), static_cast<long long>(l.total),
                  static_cast<long long>(l.kept), 100.0 * l.density(), l.threshold);
    s += line;
  }
  std::snprintf(line, sizeof line, "total: %lld of %lld weights kept (%.2f%%)\n",
                static_cast<long long>(kept()), static_cast<long long>(total()), 100.0 * density());
  s += line;
  return s;
}

PruneResult prune_by_magnitude(Model& model, double density, const PruneOptions& opt) {
  check_density(density, "target");
  if (opt.conv_density >= 0) check_density(opt.conv_density, "conv");
  if (opt.fc_density >= 0) check_density(opt.fc_density, "fc");
  for (const auto& [name, d] : opt.layer_density) {
    check_density(d, "layer '" + name + "'");
    check(model.find(name) >= 0 && prunable(model.nodes()[model.find(name)]),
          "prune_by_magnitude: no conv/fc layer named '" + name + "'");
  }
  auto& nodes = model.nodes();
  int first_conv = -1, last_fc = -1;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (!prunable(nodes[i])) continue;
    if (nodes[i].layer->type() == "conv" && first_conv < 0) first_conv = i;
    if (nodes[i].layer->type() == "fc") last_fc = i;
  }

  PruneResult res;
  std::vector<int> active;   // indices into res.layers that are pruned (not skipped)
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (!prunable(nodes[i])) continue;
    LayerMask lm;
    lm.node = i;
    lm.name = nodes[i].name;
    lm.type = nodes[i].layer->type();
    lm.total = nodes[i].layer->param("weight")->value.numel();
    const bool skip = (opt.skip_first_conv && i == first_conv) || (opt.skip_last_fc && i == last_fc);
    if (skip) {
      lm.kept = lm.total;
      lm.keep.assign(static_cast<size_t>(lm.total), 1);
      const float* w = nodes[i].layer->param("weight")->value.data();
      lm.threshold = 0.0f;
      if (lm.total) {
        lm.threshold = std::fabs(w[0]);
        for (int64_t k = 0; k < lm.total; ++k) lm.threshold = std::min(lm.threshold, std::fabs(w[k]));
      }
    } else {
      active.push_back(static_cast<int>(res.layers.size()));
    }
    res.layers.push_back(std::move(lm));
  }

  if (opt.per_layer) {
    for (int li : active) {
      LayerMask& lm = res.layers[li];
      double d = density;
      if (lm.type == "conv" && opt.conv_density >= 0) d = opt.conv_density;
      if (lm.type == "fc" && opt.fc_density >= 0) d = opt.fc_density;
      for (const auto& [name, ld] : opt.layer_density)
        if (name == lm.name) d = ld;
      const float* w = nodes[lm.node].layer->param("weight")->value.data();
      lm.kept = kept_count(d, lm.total);
      lm.threshold = select_largest(w, lm.total, lm.kept, lm.keep);
    }
  } else {
    // One threshold over all pruned layers: pool the weights in layer order (ties then go to the
    // earlier layer, then the lower index).
    int64_t n = 0;
    for (int li : active) n += res.layers[li].total;
    std::vector<float> pool;
    pool.reserve(n);
    for (int li : active) {
      const Tensor& w = nodes[res.layers[li].node].layer->param("weight")->value;
      pool.insert(pool.end(), w.data(), w.data() + w.numel());
    }
    std::vector<uint8_t> keep;
    const float thr = select_largest(pool.data(), n, kept_count(density, n), keep);
    int64_t off = 0;
    for (int li : active) {
      LayerMask& lm = res.layers[li];
      lm.keep.assign(keep.begin() + off, keep.begin() + off + lm.total);
      lm.kept = std::count(lm.keep.begin(), lm.keep.end(), uint8_t{1});
      lm.threshold = lm.kept ? thr : 0.0f;
      off += lm.total;
    }
  }
  apply_masks(model, res);
  return res;
}

void apply_masks(Model& model, const PruneResult& masks, bool with_grad) {
  auto& nodes = model.nodes();
  for (const LayerMask& lm : masks.layers) {
    check(lm.node >= 0 && lm.node < static_cast<int>(nodes.size()) && nodes[lm.node].name == lm.name,
          "apply_masks: the model has no node '" + lm.name + "' at index " + std::to_string(lm.node));
    Param* p = nodes[lm.node].layer->param("weight");
    check(p && p->value.numel() == lm.total &&
              static_cast<int64_t>(lm.keep.size()) == lm.total,
          "apply_masks: layer '" + lm.name + "' weight does not match its mask (" +
              std::to_string(lm.total) + " weights)");
    float* w = p->value.data();
    float* g = with_grad && p->grad.numel() == lm.total ? p->grad.data() : nullptr;
    const uint8_t* k = lm.keep.data();
    for (int64_t i = 0; i < lm.total; ++i)
      if (!k[i]) {
        w[i] = 0.0f;
        if (g) g[i] = 0.0f;
      }
  }
}

std::vector<EpochStats> retrain_pruned(Model& model, const PruneResult& masks,
                                       const Dataset& train_set, const Dataset* test_set,
                                       const TrainConfig& cfg,
                                       const std::function<void(const EpochStats&)>& on_epoch) {
  check(cfg.epochs >= 0, "retrain_pruned: epochs must be >= 0");
  check(cfg.batch > 0, "retrain_pruned: batch size must be positive");
  check(cfg.lr > 0 && std::isfinite(cfg.lr), "retrain_pruned: learning rate must be positive");
  const int64_t n = train_set.size();
  check(n > 0, "retrain_pruned: the training set is empty");
  apply_masks(model, masks);
  Rng rng(cfg.seed);
  Sgd sgd(cfg.momentum, cfg.weight_decay);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<EpochStats> history;
  Tensor x, dlogits;
  std::vector<int32_t> y;
  const bool bar = cfg.progress && isatty(2);
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    EpochStats st;
    st.epoch = epoch;
    st.lr = cfg.lr * (cfg.lr_step > 0 ? std::pow(cfg.lr_gamma, (epoch - 1) / cfg.lr_step) : 1.0);
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < n; b += cfg.batch) {
      const int64_t e = std::min(n, b + cfg.batch);
      gather_batch(train_set, order, b, e, x, y);
      const Tensor& out = model.forward(x, true, &rng);
      const double loss = softmax_cross_entropy(out, y.data(), &dlogits);
      check(std::isfinite(loss), "retrain_pruned: training diverged at epoch " +
                                     std::to_string(epoch) + "; lower the learning rate");
      const int64_t c = out.dim(1);
      for (int64_t i = 0; i < e - b; ++i) {
        const float* row = out.data() + i * c;
        correct += std::max_element(row, row + c) - row == y[i];
      }
      loss_sum += loss * static_cast<double>(e - b);
      model.zero_grad();
      model.backward(dlogits, &rng);
      apply_masks(model, masks, /*with_grad=*/true);   // no gradient, so no momentum, for pruned
      sgd.step(model, st.lr);
      apply_masks(model, masks);                       // and exactly zero whatever happens
      if (bar)
        std::fprintf(stderr, "\rretrain epoch %d/%d  %lld/%lld  loss %.4f", epoch, cfg.epochs,
                     static_cast<long long>(e), static_cast<long long>(n), loss_sum / e);
    }
    if (bar) std::fprintf(stderr, "\n");
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.images_per_second = st.seconds > 0 ? n / st.seconds : 0;
    st.train_loss = loss_sum / n;
    st.train_top1 = static_cast<double>(correct) / n;
    if (test_set) {
      const EvalResult r = evaluate(model, *test_set, 256, false);
      st.test_top1 = r.top1;
      st.test_top5 = r.top5;
    }
    history.push_back(st);
    if (on_epoch) on_epoch(st);
  }
  return history;
}

}  // namespace deftnn
