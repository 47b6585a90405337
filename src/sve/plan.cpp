// Synapse reordering, matrix truncation and scale adjustment (paper §4.1.1, Eq. 1-5), and the
// layer-level API that searches a conv / fc weight tensor per group.
#include <algorithm>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/sve.h"

namespace deftnn {

std::vector<int32_t> SynapsePlan::permutation() const {
  std::vector<int32_t> p(retained);
  p.insert(p.end(), discarded.begin(), discarded.end());
  return p;
}

SynapsePlan plan_elimination(const std::vector<char>& retained) {
  const int64_t K = static_cast<int64_t>(retained.size());
  check(K >= 1 && K <= INT32_MAX, "plan_elimination: need 1 <= K <= INT32_MAX synapse vectors");
  int64_t kept = 0;
  for (const char r : retained) kept += r != 0;
  check(kept >= 1, "plan_elimination: no synapse vector retained (K=" + std::to_string(K) + ")");
  SynapsePlan plan;
  plan.K = K;
  plan.scale = static_cast<double>(K) / static_cast<double>(kept);
  // Partition at P = K-D. Misplaced discarded: index < P; misplaced retained: index >= P. There
  // are as many of each; pair them in ascending order and swap each pair.
  const int64_t P = kept;
  std::vector<int32_t> perm(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) perm[i] = static_cast<int32_t>(i);
  int64_t hi = P;
  for (int64_t lo = 0; lo < P; ++lo) {
    if (retained[lo]) continue;
    while (!retained[hi]) ++hi;   // exists: the counts of misplaced vectors match
    plan.swaps.emplace_back(static_cast<int32_t>(lo), static_cast<int32_t>(hi));
    std::swap(perm[lo], perm[hi]);
    ++hi;
  }
  plan.retained.assign(perm.begin(), perm.begin() + P);
  plan.discarded.assign(perm.begin() + P, perm.end());
  return plan;
}

namespace {

void check_plan(const SynapsePlan& plan, int64_t K, const char* fn) {
  check(plan.K == K && plan.kept() + plan.eliminated() == K && plan.kept() >= 1,
        std::string(fn) + ": plan is for K=" + std::to_string(plan.K) + " (" +
            std::to_string(plan.kept()) + " retained), matrix has K=" + std::to_string(K));
}

}  // namespace

Tensor truncate_weights(const float* W, int64_t M, int64_t K, int64_t ldw, const SynapsePlan& plan) {
  check_plan(plan, K, "truncate_weights");
  check(M >= 1 && ldw >= K, "truncate_weights: need M >= 1 and ldw >= K");
  const int64_t P = plan.kept();
  const float s = static_cast<float>(plan.scale);
  Tensor out({M, P});
  float* o = out.data();
  for (int64_t m = 0; m < M; ++m) {
    const float* row = W + m * ldw;
    float* orow = o + m * P;
    for (int64_t p = 0; p < P; ++p) orow[p] = s * row[plan.retained[p]];
  }
  return out;
}

Tensor reorder_rows(const float* In, int64_t K, int64_t N, int64_t ldin, const SynapsePlan& plan) {
  check_plan(plan, K, "reorder_rows");
  check(N >= 1 && ldin >= N, "reorder_rows: need N >= 1 and ldin >= N");
  Tensor out({K, N});
  float* o = out.data();
  for (int64_t k = 0; k < K; ++k) std::copy(In + k * ldin, In + k * ldin + N, o + k * N);
  for (const auto& [a, b] : plan.swaps)
    std::swap_ranges(o + int64_t{a} * N, o + int64_t{a} * N + N, o + int64_t{b} * N);
  return out;
}

Tensor gather_retained_rows(const float* In, int64_t K, int64_t N, int64_t ldin,
                            const SynapsePlan& plan) {
  check_plan(plan, K, "gather_retained_rows");
  check(N >= 1 && ldin >= N, "gather_retained_rows: need N >= 1 and ldin >= N");
  const int64_t P = plan.kept();
  Tensor out({P, N});
  float* o = out.data();
  for (int64_t p = 0; p < P; ++p) {
    const float* src = In + int64_t{plan.retained[p]} * ldin;
    std::copy(src, src + N, o + p * N);
  }
  return out;
}

namespace {

void layer_dims(const Tensor& weight, int64_t groups, int64_t& M, int64_t& K, const char* fn) {
  check(weight.ndim() == 2 || weight.ndim() == 4,
        std::string(fn) + ": weight must be [O, I] or [O, C/g, kh, kw], got " +
            shape_str(weight.shape()));
  const int64_t O = weight.dim(0);
  check(O >= 1 && weight.numel() >= 1, std::string(fn) + ": empty weight " + shape_str(weight.shape()));
  check(groups >= 1 && O % groups == 0, std::string(fn) + ": " + std::to_string(O) +
                                            " output channels do not split into " +
                                            std::to_string(groups) + " groups");
  check(weight.ndim() == 4 || groups == 1, std::string(fn) + ": an fc weight has one group");
  M = O / groups;
  K = weight.numel() / O;
}

}  // namespace

LayerSynapsePlan plan_layer(const Tensor& weight, int64_t groups, const SynapseSearchOptions& options) {
  LayerSynapsePlan lp;
  layer_dims(weight, groups, lp.M, lp.K, "plan_layer");
  lp.groups = groups;
  for (int64_t g = 0; g < groups; ++g) {
    const float* Wg = weight.data() + g * lp.M * lp.K;
    SynapseSearchResult s;
    {
      const Tensor rho = synapse_correlation(Wg, lp.M, lp.K, lp.K);   // one K x K at a time
      s = synapse_search(rho, options);
    }
    lp.plans.push_back(plan_elimination(s.retained));
    lp.search.push_back(std::move(s));
  }
  return lp;
}

std::vector<Tensor> truncate_layer_weights(const Tensor& weight, const LayerSynapsePlan& plan) {
  int64_t M = 0, K = 0;
  layer_dims(weight, plan.groups, M, K, "truncate_layer_weights");
  check(M == plan.M && K == plan.K && static_cast<int64_t>(plan.plans.size()) == plan.groups,
        "truncate_layer_weights: plan does not match weight " + shape_str(weight.shape()));
  std::vector<Tensor> out;
  for (int64_t g = 0; g < plan.groups; ++g)
    out.push_back(truncate_weights(weight.data() + g * M * K, M, K, K, plan.plans[g]));
  return out;
}

}  // namespace deftnn
