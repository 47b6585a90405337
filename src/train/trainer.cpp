#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "deftnn/error.h"
#include "deftnn/train.h"
#include "train/progress.h"

namespace deftnn {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Rank of the true class among the logits of one sample (0 = top-1).
int64_t rank_of(const float* row, int64_t classes, int32_t label) {
  int64_t r = 0;
  float v = row[label];
  for (int64_t c = 0; c < classes; ++c)
    if (row[c] > v || (row[c] == v && c < label)) ++r;
  return r;
}

void check_dataset(const Model& model, const Dataset& d, const char* what) {
  check(d.images.ndim() >= 2 && d.images.dim(0) == static_cast<int64_t>(d.labels.size()),
        std::string(what) + " set: images and labels do not match");
  Shape sample(d.images.shape().begin() + 1, d.images.shape().end());
  check(sample == model.input_shape(),
        std::string(what) + " set '" + d.name + "' has samples of shape " + shape_str(sample) +
            " but the model expects " + shape_str(model.input_shape()));
  int64_t classes = model.output_shape(1).back();
  for (int32_t l : d.labels)
    check(l >= 0 && l < classes, std::string(what) + " set '" + d.name + "' has label " +
                                     std::to_string(l) + " but the model has " +
                                     std::to_string(classes) + " classes");
}
}  // namespace

double softmax_cross_entropy(const Tensor& logits, const int32_t* labels, Tensor* dlogits) {
  check(logits.ndim() == 2, "softmax_cross_entropy: logits must be [N, C], got " +
                                shape_str(logits.shape()));
  int64_t n = logits.dim(0), c = logits.dim(1);
  if (dlogits) dlogits->resize(logits.shape());
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = logits.data() + i * c;
    int32_t y = labels[i];
    check(y >= 0 && y < c, "softmax_cross_entropy: label " + std::to_string(y) +
                               " outside [0, " + std::to_string(c) + ")");
    float mx = *std::max_element(x, x + c);
    double sum = 0;
    for (int64_t k = 0; k < c; ++k) sum += std::exp(static_cast<double>(x[k] - mx));
    double log_sum = std::log(sum) + mx;
    total += log_sum - x[y];
    if (dlogits) {
      float* d = dlogits->data() + i * c;
      for (int64_t k = 0; k < c; ++k)
        d[k] = static_cast<float>((std::exp(x[k] - log_sum) - (k == y ? 1.0 : 0.0)) / n);
    }
  }
  return n ? total / n : 0.0;
}

void Sgd::step(Model& model, double lr) {
  size_t idx = 0;
  for (Node& node : model.nodes())
    for (Param& p : node.layer->params()) {
      if (!p.trainable) continue;
      if (velocity_.size() <= idx) velocity_.emplace_back(p.value.shape());
      Tensor& v = velocity_[idx++];
      check(v.shape() == p.value.shape() && p.grad.shape() == p.value.shape(),
            "Sgd: parameter shapes changed between steps");
      const float m = static_cast<float>(momentum_);
      const float r = static_cast<float>(lr * p.lr_mult);
      const float wd = static_cast<float>(weight_decay_ * p.decay_mult);
      float* w = p.value.data();
      float* vv = v.data();
      const float* g = p.grad.data();
      const int64_t n = p.value.numel();
#pragma omp parallel for if (n > 65536) schedule(static)
      for (int64_t k = 0; k < n; ++k) {
        vv[k] = m * vv[k] + r * (g[k] + wd * w[k]);
        w[k] -= vv[k];
      }
    }
}

void gather_batch(const Dataset& data, const std::vector<int64_t>& idx, int64_t begin, int64_t end,
                  Tensor& images, std::vector<int32_t>& labels) {
  Shape s = data.images.shape();
  int64_t per = data.images.numel() / s[0];
  s[0] = end - begin;
  images.resize(s);
  labels.resize(end - begin);
  for (int64_t i = begin; i < end; ++i) {
    int64_t j = idx.empty() ? i : idx[i];
    std::memcpy(images.data() + (i - begin) * per, data.images.data() + j * per,
                sizeof(float) * per);
    labels[i - begin] = data.labels[j];
  }
}

EvalResult evaluate(Model& model, const Dataset& data, int64_t batch, bool progress) {
  check(batch > 0, "evaluate: batch size must be positive");
  check_dataset(model, data, "evaluation");
  auto t0 = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(data.labels.size());
  EvalResult r;
  Tensor x;
  std::vector<int32_t> y;
  Progress bar("eval ", n, "img", progress);
  int64_t top1 = 0, top5 = 0;
  double loss = 0;
  for (int64_t b = 0; b < n; b += batch) {
    int64_t e = std::min(n, b + batch);
    gather_batch(data, {}, b, e, x, y);
    const Tensor& out = model.forward(x, false);
    check(out.ndim() == 2, "evaluate: model output must be [N, classes], got " +
                               shape_str(out.shape()));
    int64_t c = out.dim(1);
    loss += softmax_cross_entropy(out, y.data(), nullptr) * (e - b);
    for (int64_t i = 0; i < e - b; ++i) {
      int64_t rk = rank_of(out.data() + i * c, c, y[i]);
      top1 += rk < 1;
      top5 += rk < 5;
    }
    bar.update(e);
  }
  bar.finish();
  r.count = n;
  r.top1 = n ? static_cast<double>(top1) / n : 0;
  r.top5 = n ? static_cast<double>(top5) / n : 0;
  r.loss = n ? loss / n : 0;
  r.seconds = seconds_since(t0);
  return r;
}

bool trained_at_chance(const EpochStats& s, int64_t classes) {
  return classes > 1 && std::fabs(s.train_loss - std::log(static_cast<double>(classes))) < 0.01 &&
         s.train_top1 < 1.5 / static_cast<double>(classes);
}

std::vector<EpochStats> train(Model& model, const Dataset& train_set, const Dataset* test_set,
                              const TrainConfig& cfg,
                              const std::function<void(const EpochStats&)>& on_epoch) {
  check(cfg.epochs >= 0, "train: epochs must be >= 0");
  check(cfg.batch > 0, "train: batch size must be positive");
  check(cfg.lr > 0 && std::isfinite(cfg.lr), "train: learning rate must be a positive number");
  check_dataset(model, train_set, "training");
  if (test_set) check_dataset(model, *test_set, "test");
  const int64_t n = static_cast<int64_t>(train_set.labels.size());
  check(n > 0, "train: the training set is empty");
  Rng rng(cfg.seed);
  Sgd sgd(cfg.momentum, cfg.weight_decay);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<EpochStats> history;
  Tensor x, dlogits;
  std::vector<int32_t> y;
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    EpochStats st;
    st.epoch = epoch;
    st.lr = cfg.lr * (cfg.lr_step > 0 ? std::pow(cfg.lr_gamma, (epoch - 1) / cfg.lr_step) : 1.0);
    // Fisher-Yates with our own generator: the same seed gives the same order everywhere.
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    auto t0 = std::chrono::steady_clock::now();
    Progress bar("epoch " + std::to_string(epoch) + "/" + std::to_string(cfg.epochs), n, "img",
                 cfg.progress);
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < n; b += cfg.batch) {
      int64_t e = std::min(n, b + cfg.batch);
      gather_batch(train_set, order, b, e, x, y);
      const Tensor& out = model.forward(x, true, &rng);
      double loss = softmax_cross_entropy(out, y.data(), &dlogits);
      if (!std::isfinite(loss))
        throw Error("training diverged at epoch " + std::to_string(epoch) + " (loss is " +
                    std::to_string(loss) + "); lower the learning rate (now " +
                    std::to_string(st.lr) + ")");
      int64_t c = out.dim(1);
      for (int64_t i = 0; i < e - b; ++i) correct += rank_of(out.data() + i * c, c, y[i]) == 0;
      loss_sum += loss * (e - b);
      model.zero_grad();
      model.backward(dlogits, &rng);
      sgd.step(model, st.lr);
      char extra[64];
      std::snprintf(extra, sizeof extra, "loss %.4f", loss_sum / e);
      bar.update(e, extra);
    }
    bar.finish();
    st.seconds = seconds_since(t0);
    st.images_per_second = st.seconds > 0 ? n / st.seconds : 0;
    st.train_loss = loss_sum / n;
    st.train_top1 = static_cast<double>(correct) / n;
    if (test_set) {
      EvalResult r = evaluate(model, *test_set, 256, cfg.progress);
      st.test_top1 = r.top1;
      st.test_top5 = r.top5;
    }
    history.push_back(st);
    if (on_epoch) on_epoch(st);
  }
  return history;
}

}  // namespace deftnn
