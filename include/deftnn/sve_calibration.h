// deftnn: synapse vector elimination driven by calibration data (issue 3, "beyond the paper").
// The paper (§4.1.2) decides which synapse vectors to keep from the weights alone and rescales the
// kept ones uniformly by K/(K-D) (Eq. 5). With the layer's real inputs on a few calibration images
// two alternatives become possible, both measured against the paper's method by
// bench/bench_sve_refit.cpp:
//   - activation correlation: correlate the layer's INPUT ROWS (what the synapse vectors multiply)
//     over calibration samples instead of the weight columns, and search on that matrix;
//   - least-squares refit (as ThiNet and He et al.): instead of the uniform scale, the kept
//     columns W' minimise ||W X - W' X_r||^2 + ridge ||W'||^2 over the calibration inputs X, so
//     each kept input also absorbs what the dropped inputs it correlates with contributed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "deftnn/model.h"
#include "deftnn/sve.h"
#include "deftnn/tensor.h"

namespace deftnn {

// The GEMM input of conv / fc node `layer` on `images` [N, ...] (the model's input): K x S, one
// column per GEMM column (fc: per image; conv: per image and output position, im2col of the
// layer's input), at most max_columns of them (evenly spaced). Conv layers must have one group.
// Throws Error naming the layer otherwise.
Tensor layer_calibration_inputs(Model& model, const std::string& layer, const Tensor& images,
                                int64_t max_columns = 20000);

// W' (M x K') with W'[:, p] for original column plan.retained[p]: the ridge least-squares refit
//   W' = (W X X_r^T) (X_r X_r^T + ridge * tr(X_r X_r^T) / K' * I)^-1,
// X = calib (K x S, row stride S), X_r its retained rows. Double precision normal equations,
// Cholesky solve. W is M x K (row stride ldw >= K). Throws Error on non-finite inputs or sizes
// that do not match the plan.
Tensor refit_least_squares(const float* W, int64_t M, int64_t K, int64_t ldw,
                           const SynapsePlan& plan, const Tensor& calib, double ridge = 1e-4);

// For node `layer` already eliminated in `model` (attribute `retained`, one group), replaces its
// weight by the least-squares refit of `dense`'s weight for the same retained rows, fitted on the
// layer's inputs in `dense` (the other layers dense, so refitted candidates still compose) for
// calibration `images`. `dense` is not changed (its forward runs). Throws Error naming the layer
// when it is not eliminated in `model` or not dense in `dense`.
void refit_eliminated_layer(Model& model, Model& dense, const std::string& layer, const Tensor& images,
                            double ridge = 1e-4, int64_t max_columns = 20000);

}  // namespace deftnn
