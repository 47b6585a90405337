// deftnn: losses, SGD, the training loop and evaluation.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/model.h"

namespace deftnn {

// Mean softmax cross-entropy over the batch of logits [N, C]. If dlogits is given it receives
// dL/dlogits = (softmax - onehot) / N. Throws Error on a label outside [0, C).
double softmax_cross_entropy(const Tensor& logits, const int32_t* labels, Tensor* dlogits);

// Mini-batch SGD with momentum and L2 weight decay, Caffe's update rule:
//   v = momentum * v + lr * lr_mult * (grad + weight_decay * decay_mult * w);  w -= v
class Sgd {
 public:
  Sgd(double momentum, double weight_decay) : momentum_(momentum), weight_decay_(weight_decay) {}
  void step(Model& model, double lr);

 private:
  double momentum_, weight_decay_;
  std::vector<Tensor> velocity_;
};

struct TrainConfig {
  int epochs = 10;
  int64_t batch = 64;
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  int lr_step = 0;          // multiply lr by lr_gamma every lr_step epochs (0 = constant)
  double lr_gamma = 0.1;
  uint64_t seed = 1;        // shuffling and dropout; same seed, same result
  bool progress = true;     // progress bar on stderr when it is a terminal
};

struct EpochStats {
  int epoch = 0;            // 1-based
  double lr = 0;
  double train_loss = 0;
  double train_top1 = 0;    // fraction of training samples classified right during the epoch
  double test_top1 = -1;    // -1 when no test set was given
  double test_top5 = -1;
  double seconds = 0;       // training time of the epoch (evaluation excluded)
  double images_per_second = 0;
};

struct EvalResult {
  int64_t count = 0;
  double top1 = 0;
  double top5 = 0;
  double loss = 0;
  double seconds = 0;
};

// Evaluates top-1/top-5 accuracy and mean loss of `model` on `data` in batches.
EvalResult evaluate(Model& model, const Dataset& data, int64_t batch = 256, bool progress = true);

// Trains in place; calls on_epoch after each epoch (with test metrics when test != nullptr).
std::vector<EpochStats> train(Model& model, const Dataset& train_set, const Dataset* test_set,
                              const TrainConfig& config,
                              const std::function<void(const EpochStats&)>& on_epoch = {});

// True when an epoch trained at chance: its loss within 0.01 of ln(classes) and its training
// accuracy below 1.5 / classes (the units died early, typically from too high a learning rate;
// the loss stays finite, so train() does not stop on it).
bool trained_at_chance(const EpochStats& s, int64_t classes);

// Copies samples idx[begin, end) of `data` into a batch tensor and label vector.
void gather_batch(const Dataset& data, const std::vector<int64_t>& idx, int64_t begin, int64_t end,
                  Tensor& images, std::vector<int32_t>& labels);

}  // namespace deftnn
