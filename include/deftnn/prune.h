// deftnn: the baseline the paper compares synapse vector elimination with (§2.1, §5.8):
// magnitude network pruning in the style of Han et al. 2015 ("Learning both Weights and
// Connections"): zero the smallest-magnitude weights of each conv/fc layer, keep a mask, retrain
// with the pruned weights held at zero. The pruned model can run with the dense kernel (sgemm:
// the zeros cost as much as any other weight) or with a CSR sparse kernel (spmm below), which
// skips them but loses the dense micro-kernel's regularity.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/model.h"
#include "deftnn/train.h"

namespace deftnn {

// ---------------------------------------------------------------------------------------------
// CSR sparse matrix and kernel

// A rows x cols matrix in compressed sparse row form: the non-zeros of row i are
// values[row_ptr[i] .. row_ptr[i + 1]) at columns col_idx[same range], columns ascending.
struct CsrMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;   // rows + 1 entries, row_ptr[0] = 0
  std::vector<int32_t> col_idx;   // nnz entries, each in [0, cols)
  std::vector<float> values;      // nnz entries

  // From a dense row-major M x K matrix (lda >= K), dropping exact zeros (+0 and -0). Throws
  // Error when K does not fit the 32-bit column index or lda < K.
  static CsrMatrix from_dense(const float* A, int64_t M, int64_t K, int64_t lda);
  // Writes the matrix densely into A (row-major, lda >= cols), zeros included.
  void to_dense(float* A, int64_t lda) const;
  int64_t nnz() const { return static_cast<int64_t>(values.size()); }
  double density() const {
    return rows > 0 && cols > 0 ? static_cast<double>(nnz()) / static_cast<double>(rows * cols) : 0.0;
  }
  // Bytes of the three arrays (what the kernel streams besides B and C).
  int64_t bytes() const;
};

// C (M x N) = A (M x K, CSR) * B (K x N); row-major, ldb >= N, ldc >= N; C is write-only.
// OpenMP over rows of A (rows handed out in chunks so an uneven non-zero count per row, or a
// preempted thread, does not stall the team), vectorised over N with the active ISA's kernel
// (active_isa(): AVX-512, AVX2 or portable); N = 1 is SpMV (gathers x along each row).
void spmm(const CsrMatrix& a, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc);

// The naive reference: for each row, for each non-zero, accumulate in double. Single thread.
void spmm_ref(const CsrMatrix& a, const float* B, int64_t ldb, int64_t N, float* C, int64_t ldc);

// Name of the kernel spmm runs now ("spmm_avx512", "spmm_avx2", "spmm_portable").
const char* active_spmm_kernel();

// Sparse inference of pruned layers: the baseline's sparse kernel run inside the model, so that
// a pruned network is timed end to end (§5.8), not only GEMM by GEMM. A conv or fc layer of a
// frozen model (Model::freeze) at inference, with fp32 weights (no reduced format), keeps its
// weights in CSR (one matrix per group, built once, like the packed weights) and runs a
// direct sparse convolution (fc: spmm on X^T) instead of the dense kernels, with the same bias, fused
// residual, ReLU and concat-slice output. The sum order differs from the dense kernels' (the
// results agree to rounding). `automatic` (the default) runs a layer sparse where its weight
// density is at most sparse_auto_density(kind) - the crossover measured on this machine (see
// src/gemm/spmm.cpp); `off`
// never (the dense kernels: the pruned model's "dense kernel" time); `on` every eligible layer
// (tests). DEFTNN_SPARSE=auto|off|on sets the starting policy; a bad value is an error naming it.
// Not thread-safe against running inference; set it before.
enum class SparsePolicy : int { automatic = 0, off = 1, on = 2 };
SparsePolicy sparse_policy();
void set_sparse_policy(SparsePolicy p);
SparsePolicy sparse_policy_from_name(const std::string& name);   // throws Error naming it
const char* sparse_policy_name(SparsePolicy p);
// The density (non-zeros / weights) at or below which `automatic` runs a layer of this kind
// ("conv" or "fc") sparse.
double sparse_auto_density(const std::string& kind);
// Non-zeros / n of w[0..n) (1 for n == 0): a weight tensor's density.
double weight_density(const float* w, int64_t n);
// Whether the policy runs a layer of this kind, weight density, output rows and depth (K per
// group) sparse: automatic also wants 8 non-zeros per output on average (density * depth) and
// an fc layer of at least 64 outputs.
bool sparse_pays(const std::string& kind, double density, int64_t rows, int64_t depth);

// ---------------------------------------------------------------------------------------------
// Magnitude pruning

struct PruneOptions {
  // Han et al. prune each layer with its own threshold; per_layer = false pools every prunable
  // weight and applies one global magnitude threshold instead (density is then the overall one).
  bool per_layer = true;
  // Leave the first conv and / or the last fc dense (the most sensitive layers in Han et al.).
  bool skip_first_conv = false;
  bool skip_last_fc = false;
  // Per-kind target densities in (0, 1]; < 0 means use the density argument.
  double conv_density = -1;
  double fc_density = -1;
  // Per-layer overrides by node name (win over everything above; per_layer mode only).
  std::vector<std::pair<std::string, double>> layer_density;
};

// What pruning did to one layer's weight tensor. keep[i] = 1 for a weight that survived.
struct LayerMask {
  int node = -1;               // index into Model::nodes()
  std::string name, type;      // node name, "conv" / "fc"
  int64_t total = 0;           // weights in the layer
  int64_t kept = 0;            // weights kept (may include weights that were already zero)
  float threshold = 0;         // smallest |w| kept (0 when none kept)
  std::vector<uint8_t> keep;   // total entries
  double density() const { return total ? static_cast<double>(kept) / total : 0.0; }
};

struct PruneResult {
  std::vector<LayerMask> layers;   // one per pruned (or skipped, then all kept) conv/fc layer
  int64_t total() const;
  int64_t kept() const;
  double density() const;          // kept / total over the listed layers
  std::string summary() const;     // one line per layer
};

// Prunes every conv/fc weight tensor of `model` (biases are left alone) to the target density:
// in each layer, kept = round(density * total) weights of largest |w| stay, the rest become
// +0. Ties in |w| are broken by position (the lower flat index is kept), so the result is
// deterministic. Throws Error on a density outside [0, 1].
PruneResult prune_by_magnitude(Model& model, double density, const PruneOptions& options = {});

// Sets every masked-out weight of `model` to zero again (and, if with_grad, its gradient).
void apply_masks(Model& model, const PruneResult& masks, bool with_grad = false);

// Retraining of the pruned model (Han et al.'s second step): mini-batch SGD where each
// pruned weight's gradient is zeroed before the step and the weight re-zeroed after it, so
// pruned weights stay exactly zero and momentum never revives them. Uses TrainConfig's
// epochs, batch, lr (Han: about 1/10 of the original), momentum, weight_decay, lr_step,
// seed; progress shows on stderr. on_epoch receives the same statistics as train().
std::vector<EpochStats> retrain_pruned(Model& model, const PruneResult& masks,
                                       const Dataset& train_set, const Dataset* test_set,
                                       const TrainConfig& config,
                                       const std::function<void(const EpochStats&)>& on_epoch = {});

}  // namespace deftnn
