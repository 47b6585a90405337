// deftnn: synapse vector elimination (paper §4.1): correlation of synapse vectors (Eq. 6), the
// greedy synapse search (Eq. 7), rounding the retained count, and the reordering / truncation /
// scale adjustment (§4.1.1, Eq. 1-5) that turn an M x K by K x N GEMM into an M x (K-D) by
// (K-D) x N one.
//
// Vocabulary. Every GEMM of a layer is Out[M x N] = W[M x K] * In[K x N]. A synapse vector is a
// column k of W: the M weights that multiply input row k. A conv weight [O, C/g, kh, kw] gives, per
// group g, the M = O/g rows x K = (C/g)*kh*kw columns (rows g*M .. g*M+M-1 of the O x K view); an
// fc weight [O, I] gives M = O, K = I.
//
// Pipeline:  rho = synapse_correlation(W)            K x K, Eq. 6
//            s   = synapse_search(rho, options)       retained flags, Eq. 7, rounded to `align`
//            p   = plan_elimination(s.retained)       reorder by paired swaps, scale K/(K-D)
//            W'  = truncate_weights(W, p)             M x (K-D), scale folded in (offline)
//            In' = gather_retained_rows(In, p)        (K-D) x N (what im2col / fc packing reads)
//            Out ~= W' * In'                           Eq. 5
// plan_layer() runs the first three steps per group of a conv / fc weight tensor.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "deftnn/tensor.h"

namespace deftnn {

// ---------------------------------------------------------------------------------------------
// Correlation (Eq. 6)
// ---------------------------------------------------------------------------------------------
// rho[i][j] = Pearson correlation of columns i and j of W (M x K, row stride ldw >= K), over the
// M entries of each column. Returned as a K x K Tensor, exactly symmetric, diagonal exactly 1,
// every entry clamped to [-1, 1].
// Zero-variance ("constant") columns, including all-zero columns and every column when M == 1:
// Pearson is undefined for them; we define rho = 1 between two constant columns (they have the
// same shape, the all-ones vector, so either represents the other up to a scale) and rho = 0
// between a constant and a non-constant column. A column is constant when its centred values are
// all exactly zero (computed in double).
// Fast path: columns are centred and normalised once (double accumulation, float storage), then
// rho = Z^T Z is one K x K sgemm. Entries carry float rounding (~1e-7 * sqrt(M)): two identical
// columns may give 0.99999994, so a threshold meant as "exact duplicates only" should be
// 1 - 1e-5 rather than 1. Memory: K*K floats for rho plus M*K floats for Z.
// Throws Error on non-finite weights, M < 1, K < 1 or ldw < K.
Tensor synapse_correlation(const float* W, int64_t M, int64_t K, int64_t ldw);
// The naive reference: two passes (means, then covariances and variances) per pair, in double,
// same conventions for constant columns. O(M K^2); for tests.
Tensor synapse_correlation_ref(const float* W, int64_t M, int64_t K, int64_t ldw);

// ---------------------------------------------------------------------------------------------
// Greedy synapse search (Eq. 7)
// ---------------------------------------------------------------------------------------------
struct SynapseSearchOptions {
  // alpha: S_i represents S_j when rho_ij >= alpha. Values above 1 retain every vector.
  double correlation_threshold = 0.9;
  // false (default, the paper): the signed rho_ij >= alpha; an anti-correlated vector is never
  // represented (dropping it and scaling up the rest would push the output the wrong way).
  // true: |rho_ij| >= alpha.
  bool absolute = false;
  // Round the retained count up to a multiple of `align` (never above K) by adding back
  // discarded vectors, least-represented first (see synapse_search). 1 = no rounding.
  int64_t align = 1;
};

struct SynapseSearchResult {
  std::vector<char> retained;            // K flags: 1 retained, 0 discarded
  std::vector<int32_t> representative;   // K entries: for a vector discarded by the greedy step,
                                         // the retained vector that represented it; for a
                                         // retained vector (greedy or added back), itself
  std::vector<int32_t> order;            // vectors retained by the greedy step, in retention order
  int64_t greedy_retained = 0;           // retained count before rounding (= order.size())
  int64_t added_for_alignment = 0;       // vectors added back by the rounding step
  int64_t retained_count() const { return greedy_retained + added_for_alignment; }
};

// The greedy search. R_i = #{j undecided : i represents j} (i counts itself when alpha <= 1).
// Each round retains the undecided vector with the largest R_i (ties: lowest index), discards
// every undecided vector it represents, and repeats until no vector is undecided. Counts are
// updated incrementally: when j leaves the undecided set, R_i is decremented for every undecided
// i that represents j (one scan of row j), so the whole search is O(K^2) time and O(K) extra
// memory. rho must be K x K and symmetric (as synapse_correlation returns).
// Rounding (options.align > 1): while the retained count is not a multiple of align (and < K),
// add back the discarded vector whose best correlation with the current retained set (signed or
// absolute, as the search) is lowest, i.e. the one the retained set represents worst; ties ->
// lowest index. The retained set grows with each addition, so the next pick sees it.
SynapseSearchResult synapse_search(const Tensor& rho, const SynapseSearchOptions& options = {});
// The reference: recounts every R_i from scratch each round, O(K^3). Same result (for tests).
SynapseSearchResult synapse_search_ref(const Tensor& rho, const SynapseSearchOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Reordering, truncation and scale (§4.1.1, Eq. 1-5)
// ---------------------------------------------------------------------------------------------
struct SynapsePlan {
  int64_t K = 0;                  // original inner dimension
  // Original indices in the order the truncated matrices use: position p < K-D of W' / In' is
  // original synapse vector retained[p]. Size K-D. This is the list im2col / fc packing reads.
  std::vector<int32_t> retained;
  // Original indices at reordered positions K-D .. K-1 (cut by truncation). Size D.
  std::vector<int32_t> discarded;
  // The paper's pairing: each misplaced discarded vector (index < K-D) swapped with a misplaced
  // retained one (index >= K-D), both in ascending order; (first, second) = (the discarded
  // position < K-D, the retained position >= K-D). Only these vectors move.
  std::vector<std::pair<int32_t, int32_t>> swaps;
  double scale = 1.0;             // K / (K-D), Eq. 5

  int64_t kept() const { return static_cast<int64_t>(retained.size()); }       // K-D
  int64_t eliminated() const { return static_cast<int64_t>(discarded.size()); } // D
  // The full reordering: position p -> original index (retained then discarded), size K.
  std::vector<int32_t> permutation() const;
};

// Builds the plan from K retained flags (at least one retained; throws Error otherwise).
// Rounding to an alignment belongs to synapse_search (it needs rho).
SynapsePlan plan_elimination(const std::vector<char>& retained);

// W' (M x (K-D)): W'[m][p] = scale * W[m][retained[p]], the Eq. 5 factor folded into the weights.
Tensor truncate_weights(const float* W, int64_t M, int64_t K, int64_t ldw, const SynapsePlan& plan);
// The reference reordering of §4.1.1 applied to an input matrix In (K x N, row stride ldin >= N):
// copies In and swaps the row pairs of plan.swaps. Result K x N; its first K-D rows are In'.
Tensor reorder_rows(const float* In, int64_t K, int64_t N, int64_t ldin, const SynapsePlan& plan);
// In' ((K-D) x N) built by reading only the retained rows: In'[p] = In[retained[p]].
Tensor gather_retained_rows(const float* In, int64_t K, int64_t N, int64_t ldin,
                            const SynapsePlan& plan);

// ---------------------------------------------------------------------------------------------
// Layer level: conv / fc weight tensors, searched per group
// ---------------------------------------------------------------------------------------------
struct LayerSynapsePlan {
  int64_t groups = 1;
  int64_t M = 0;                          // rows per group (O / groups)
  int64_t K = 0;                          // synapse vectors per group (numel / O)
  std::vector<SynapseSearchResult> search;  // one per group
  std::vector<SynapsePlan> plans;           // one per group
};
// weight: [O, I] (fc) or [O, C/groups, kh, kw] (conv); O must divide by groups. Each group's
// block (rows g*M .. g*M+M-1 of the O x K view) gets its own correlation, search and plan.
LayerSynapsePlan plan_layer(const Tensor& weight, int64_t groups, const SynapseSearchOptions& options);
// The truncated, scaled weights of each group: groups x (M x (K-D_g)).
std::vector<Tensor> truncate_layer_weights(const Tensor& weight, const LayerSynapsePlan& plan);

}  // namespace deftnn
