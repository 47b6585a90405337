// deftnn: the synapse vector elimination optimiser (paper §3 steps 2-3, §4.1.3, §5.6): per layer
// and correlation threshold, search, truncate, fine-tune and measure a candidate; compose
// candidates into configurations; keep the Pareto frontier of (validation accuracy, measured
// time); save it; select the configuration nearest a user's target at run time.
//
// Candidates and composition. A candidate is one <layer, threshold> pair: that layer replaced by
// its eliminated form (attribute `retained`, weight truncated to [O, K'] with the K/K' scale
// folded in, see src/ops/conv.h) and then fine-tuned with EVERY OTHER PARAMETER FROZEN. Only the
// eliminated layer's parameters change, so a candidate is stored as that one layer, and any set
// of candidates for distinct layers composes by swapping those layers into the base model,
// without retraining (the paper's "each <layer, threshold> pair is fine-tuned independently").
//
// Times are measured on this machine, never FLOP counts: medians over iterations of runs that
// interleave the models compared forward by forward (profile_models), so every model sees the
// same load of the shared machine. A candidate's
// saving is the measured time of its layer dense minus eliminated; a configuration's time is
// estimated from those savings to rank combinations, and every configuration on the saved
// frontier is then measured end to end and its accuracy evaluated on the validation set.
//
// Saved result (a directory, "OPT"):
//   OPT/base.deft               the dense model as given
//   OPT/cand_<layer>_<i>.deft    one per candidate: a model holding only the eliminated layer
//                                (its input shape = that layer's input, one sample)
//   OPT/frontier.json           candidates (layer, threshold, K, K', accuracy, times, file) and
//                                the frontier (per point: chosen candidate per layer, accuracy,
//                                time, speedup), plus the timing batch and the base figures
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/model.h"
#include "deftnn/sve.h"
#include "deftnn/train.h"

namespace deftnn {

// ---------------------------------------------------------------------------------------------
// One layer
// ---------------------------------------------------------------------------------------------
struct LayerElimination {
  std::string layer;                 // node name
  double correlation_threshold = 1;  // alpha of the search
  int64_t groups = 1;
  int64_t K = 0;                     // synapse vectors per group before elimination
  int64_t kept = 0;                  // K' per group (the same for every group)
  std::vector<int64_t> retained;     // groups x K', concatenated (the layer's `retained` attr)
};

// The conv / fc nodes that are still dense (candidates for elimination), in graph order.
std::vector<std::string> eliminable_layers(const Model& model);
// eliminable_layers without the last one (the classifier), the optimiser's default.
std::vector<std::string> default_elimination_layers(const Model& model);

// Searches node `layer` (a dense conv or fc) with `options` (plan_layer per group), makes every
// group keep the same count K' (a short group gets back its discarded vectors of largest L2 norm
// until it matches the largest group, which is already aligned), and replaces the node in place
// by its eliminated form: attrs + `retained`, weight [O, K'] = K/K' * W[:, retained], bias kept.
// Throws Error naming the layer when it is not a dense conv / fc.
LayerElimination eliminate_layer(Model& model, const std::string& layer,
                                 const SynapseSearchOptions& options);

// Replaces dense conv / fc node `layer` by its eliminated form: attribute `retained` (groups x K'
// original rows, concatenated) and weight [O, K'] (e.g. truncate_weights, or the least-squares
// refit of deftnn/sve_calibration.h); bias and trainable flags kept. Throws Error naming the
// layer on a bad list or weight shape, or when it is not a dense conv / fc.
void set_layer_elimination(Model& model, const std::string& layer,
                           const std::vector<int64_t>& retained, const Tensor& weight);

// A fixed elimination without search, for timing studies and tests (accuracy is not the point):
// each group of dense conv / fc node `layer` keeps ceil(fraction * K) synapse vectors rounded up
// to a multiple of `align` (at most K), evenly spread (rows floor(p K / K')), weights scaled by
// K/K' (Eq. 5). Throws Error naming the layer when it is not a dense conv / fc.
void eliminate_evenly(Model& model, const std::string& layer, double fraction = 0.5,
                      int64_t align = 16);

// ---------------------------------------------------------------------------------------------
// The optimiser
// ---------------------------------------------------------------------------------------------
struct OptimizeOptions {
  std::vector<std::string> layers;    // empty: default_elimination_layers
  std::vector<double> thresholds{0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3};
  // Per-layer sweeps replacing `thresholds` for the layers named (each layer's synapse vectors
  // correlate differently: LeNet's ip1 keeps 744 of 800 columns at alpha 0.3, its conv2 120 of
  // 500). Every key must be one of the optimised layers.
  std::map<std::string, std::vector<double>> layer_thresholds;
  bool absolute = false;              // |rho| >= alpha (SynapseSearchOptions::absolute)
  // The retained count rounded up to a multiple of this: 16 floats, one AVX-512 vector, so that
  // a truncated fc's weight rows stay 64-byte aligned for the batch-1 GEMV, which reads them in
  // place (LeNet's ip1, 500 rows, 2 threads: K' = 768, 784, 800 ran 0.0148-0.0150 ms; 776 and
  // 792, 8 floats off, 0.0174-0.0175 ms). The conv and batched fc kernels pack their weights,
  // so any count suits them.
  int64_t align = 16;
  TrainConfig finetune = [] {
    TrainConfig c;
    c.epochs = 1;
    c.lr = 0.001;
    c.progress = false;
    return c;
  }();
  int64_t time_batch = 32;            // batch size of every timing
  int time_iterations = 30;           // profile_model iterations per timing (medians)
  int64_t eval_batch = 256;
  int max_evaluated = 24;             // composed configurations evaluated for the frontier
  // Calibration images [N, ...] for the least-squares refit of each candidate's kept columns
  // (deftnn/sve_calibration.h, fitted on the dense model's layer inputs before fine-tuning);
  // empty: the paper's uniform K/(K-D) scale. Conv layers with groups keep the scale.
  Tensor refit_images;
  // Progress lines ("conv2 alpha 0.80: K' 256/500, acc 90.1% -> 91.0%, 0.41 ms"), may be empty.
  std::function<void(const std::string&)> progress;
};

struct Candidate {
  LayerElimination elimination;
  double accuracy_searched = 0;       // validation top-1, only this layer eliminated, before fine-tune
  double accuracy = 0;                // ... after fine-tuning (a candidate fine-tuning made
                                      // worse keeps its searched weights and accuracy)
  double layer_ms = 0;                // measured median of the eliminated layer (time_batch)
  double dense_layer_ms = 0;          // the same layer dense, measured in the same run
  // End to end with only this candidate swapped in, and the base, from one time_models run
  // (thread CPU time when single-threaded); their difference is the saving the frontier
  // estimate adds up. 0 when unknown (older files): the layer times are used instead.
  double model_ms = 0, base_model_ms = 0;
  std::string file;                   // file name inside the OPT directory
  std::unique_ptr<Layer> layer;       // the fine-tuned eliminated layer (null until loaded)
};

// A configuration: for each optimised layer, the index of its candidate (-1 = dense).
struct FrontierPoint {
  std::map<std::string, int> choice;  // layer -> candidate index in Optimization::candidates
  double accuracy = 0;                // validation top-1 of the composed model
  double ms = 0;                      // measured end-to-end time at time_batch
  double speedup = 1;                 // base time / ms, both from one interleaved run
};

struct Optimization {
  std::string base_file;              // path of the base model (OPT/base.deft once saved)
  Model base;
  std::vector<std::string> layers;
  std::vector<Candidate> candidates;
  std::vector<FrontierPoint> frontier;   // Pareto-optimal points, fastest last
  double base_accuracy = 0;
  double base_ms = 0;
  int64_t time_batch = 0;
  std::string validation;             // name and size of the validation set
  HeldOut validation_split;           // when validated on training images held out of training
                                      // (frontier.json "validation_split"); empty otherwise
};

// The whole pipeline on a base model (left unchanged): candidates for each layer and threshold
// (fine-tuned on `train_set`, evaluated on `validation`), then the frontier.
Optimization optimize(const Model& base, const Dataset& train_set, const Dataset& validation,
                      const OptimizeOptions& options);

// The base model with the chosen candidates swapped in (copies of their layers).
Model compose(const Optimization& opt, const std::map<std::string, int>& choice);

// Joint fine-tuning of one configuration (beyond the per-candidate fine-tune; issue 3 allows a
// final joint fine-tune of a SELECTED configuration): the composed model, every parameter the
// base trains trainable (flags, lr_mult, decay_mult kept), trained with `config` on `train_set`. The candidates and
// the frontier are untouched, so the per-layer candidates still compose for the frontier; the
// result is a standalone model (its dense layers changed too, so it is no longer the base plus
// swapped layers). Eliminated layers keep their `retained` index; gradients flow through it.
// Knowledge distillation from the dense base (Hinton et al. 2015), off when weight == 0: the loss
// is (1 - weight) * CE(z, labels) + weight * T^2 * KL(softmax(t / T) || softmax(z / T)), t the
// base's logits on the same batch (inference, frozen), z the fine-tuned model's.
struct Distillation {
  double weight = 0;
  double temperature = 4;
};
Model finetune_configuration(const Optimization& opt, const std::map<std::string, int>& choice,
                             const Dataset& train_set, const TrainConfig& config,
                             const Distillation& distill = {});
// Trains `student` in place as train() does (same shuffling, SGD, schedule), with the loss above.
void train_distilled(Model& student, Model& teacher, const Dataset& train_set, const TrainConfig& config,
                     const Distillation& distill);

// The frontier after joint fine-tuning: each point of opt.frontier (the all-dense one included,
// as the control: the same extra training on the dense model) whose frontier accuracy is at
// least base - max_loss points is jointly fine-tuned with `config` and evaluated on
// `validation`. Times are the frontier's (fine-tuning changes no shape).
struct RefinedPoint {
  int point = -1;                 // index into opt.frontier
  double accuracy_before = 0;     // the frontier's validation top-1 (candidates composed)
  double accuracy = 0;            // validation top-1 after the joint fine-tune
  Model model;
};
// refine_frontier fills `accuracy`; time_refined times the base and every refined model in one
// interleaved run (time_models) and returns base_ms followed by one time per refined point.
std::vector<RefinedPoint> refine_frontier(const Optimization& opt, const Dataset& train_set,
                                          const Dataset& validation, const TrainConfig& config,
                                          double max_loss,
                                          const std::function<void(const std::string&)>& progress = {},
                                          const Distillation& distill = {});
std::vector<double> time_refined(Optimization& opt, std::vector<RefinedPoint>& refined, int64_t batch,
                                 int iterations, int rounds = 3);
// Among refined points, the fastest whose refined accuracy is at least reference - max_loss
// points; -1 if none. Returns an index into `refined`. Speed: ms[1 + i] for refined[i] when `ms`
// (from time_refined) is given, else the frontier's ms.
int select_refined(const Optimization& opt, const std::vector<RefinedPoint>& refined,
                   double reference_accuracy, double max_loss, const std::vector<double>& ms = {});

// Forward time of each model at `batch`, the models interleaved forward by forward (the first
// rotating) for `rounds` x `iterations`, the median per model. Single-threaded
// (omp_get_max_threads() == 1) each forward is timed by the calling thread's CPU time: at load 7
// on the shared 2-core machine a 4.3 ms LeNet forward took 17 ms of wall time, and wall ratios
// skewed towards the shorter model (a long forward sits through more preemptions). With more
// threads, wall time (CPU time would add the threads up).
std::vector<double> time_models(const std::vector<Model*>& models, int64_t batch, int iterations,
                                int rounds = 3);

// The Pareto frontier of points: keeps a point unless another has accuracy >= and ms <= with one
// strict; sorted by ms descending (slowest, most accurate first). Ties: the first kept.
std::vector<FrontierPoint> pareto_frontier(std::vector<FrontierPoint> points);

// Selection. max_accuracy_loss (points, e.g. 0.5): the fastest point whose accuracy is at least
// base - loss; min_speedup: the most accurate point whose speedup is at least it (if none
// reaches it, the fastest point). Exactly one of the two must be >= 0. Returns the index into
// opt.frontier. The base (all dense) is always on the frontier, so loss 0 always finds a point.
struct SelectTarget {
  double max_accuracy_loss = -1;   // percentage points
  double min_speedup = -1;
};
// Parses "max-loss=0.5" / "max-accuracy-loss=0.5" / "min-speedup=2"; throws Error otherwise.
SelectTarget parse_target(const std::string& s);
int select_point(const Optimization& opt, const SelectTarget& target);

// Saves to / loads from a directory (created if missing). Loading validates every file and
// throws Error naming the file that is wrong.
void save_optimization(const Optimization& opt, const std::string& dir);
Optimization load_optimization(const std::string& dir);

}  // namespace deftnn
