// deftnn: the optimiser's format stage (issue 4, near-compute data fission): per conv / fc layer,
// the smallest weight format that keeps the model's accuracy within a budget.
//
// Greedy, largest layer first (most weight bytes to save): each layer tries the candidate formats
// in the order given (fewest bits first) with the layers already decided in their chosen formats,
// and keeps the first whose validation top-1 stays within `max_accuracy_loss` of the fp32 model;
// a layer where none does stays fp32. The budget is for the whole model, not per layer: the
// result's measured accuracy is always within it.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/model.h"
#include "deftnn/precision.h"

namespace deftnn {

struct FormatStageOptions {
  // Tried per layer in this order; f32 is implied last. Default: Deft-8 E4 and E5, bf16.
  std::vector<Format> formats{Format::deft8_e4, Format::deft8_e5, Format::bf16};
  double max_accuracy_loss = 0.002;   // fraction of top-1 (0.002 = 0.2 points)
  FissionMode mode = FissionMode::fission;
  Rounding rounding = Rounding::nearest_even;
  int64_t eval_batch = 256;
  std::function<void(const std::string&)> progress;   // one line per decision; may be empty
};

struct FormatStageResult {
  FormatSpec spec;                                       // node:format parts ("f32" if none)
  std::vector<std::pair<std::string, Format>> layers;    // every conv/fc node and its format
  double base_accuracy = 0;                              // fp32 top-1 on the data
  double accuracy = 0;                                   // with `spec` applied
  int evaluations = 0;                                   // validation runs made
};

// Runs the stage on `model` (its current formats are reset to fp32 first) and leaves the chosen
// formats applied. Throws Error on an empty data set, a negative budget or an empty or
// unsupported format list.
FormatStageResult choose_formats(Model& model, const Dataset& data, const FormatStageOptions& options);

}  // namespace deftnn
