// Greedy synapse search (paper Eq. 7) with incremental representation counts, the naive
// recount-every-round reference, and rounding the retained count up to an alignment.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/sve.h"

namespace deftnn {

namespace {

int64_t check_rho(const Tensor& rho, const SynapseSearchOptions& o, const char* fn) {
  check(rho.ndim() == 2 && rho.dim(0) == rho.dim(1) && rho.dim(0) >= 1,
        std::string(fn) + ": rho must be a non-empty square matrix, got " +
            shape_str(rho.shape()));
  check(rho.dim(0) <= INT32_MAX, std::string(fn) + ": K too large");
  check(!std::isnan(o.correlation_threshold), std::string(fn) + ": correlation_threshold is NaN");
  check(o.align >= 1, std::string(fn) + ": align must be >= 1, got " + std::to_string(o.align));
  return rho.dim(0);
}

// "i represents j": rho_ij >= alpha (or |rho_ij| >= alpha). Compared in double so that alpha
// slightly above a float value behaves as written.
struct Relation {
  double alpha;
  bool absolute;
  bool operator()(float r) const {
    const double v = absolute ? std::fabs(static_cast<double>(r)) : static_cast<double>(r);
    return v >= alpha;
  }
  double strength(float r) const {
    return absolute ? std::fabs(static_cast<double>(r)) : static_cast<double>(r);
  }
};

// Rounding: add back the discarded vector least represented by the current retained set
// (lowest max correlation to it; ties -> lowest index) until the count is a multiple of align.
void round_to_alignment(const Tensor& rho, const Relation& rel, int64_t align,
                        SynapseSearchResult& res) {
  const int64_t K = rho.dim(0);
  int64_t count = res.greedy_retained;
  int64_t target = (count + align - 1) / align * align;
  if (target > K) target = K;
  if (target == count) return;
  const float* r = rho.data();
  // best[j] = max over retained i of strength(rho_ij), for discarded j.
  std::vector<double> best(static_cast<size_t>(K), -std::numeric_limits<double>::infinity());
  for (int64_t i = 0; i < K; ++i) {
    if (!res.retained[i]) continue;
    const float* ri = r + i * K;
    for (int64_t j = 0; j < K; ++j)
      if (!res.retained[j]) best[j] = std::max(best[j], rel.strength(ri[j]));
  }
  for (; count < target; ++count) {
    int64_t pick = -1;
    for (int64_t j = 0; j < K; ++j)
      if (!res.retained[j] && (pick < 0 || best[j] < best[pick])) pick = j;
    res.retained[pick] = 1;
    res.representative[pick] = static_cast<int32_t>(pick);
    ++res.added_for_alignment;
    const float* rp = r + pick * K;
    for (int64_t j = 0; j < K; ++j)
      if (!res.retained[j]) best[j] = std::max(best[j], rel.strength(rp[j]));
  }
}

SynapseSearchResult empty_result(int64_t K) {
  SynapseSearchResult res;
  res.retained.assign(static_cast<size_t>(K), 0);
  res.representative.assign(static_cast<size_t>(K), -1);
  return res;
}

}  // namespace

SynapseSearchResult synapse_search(const Tensor& rho, const SynapseSearchOptions& options) {
  const int64_t K = check_rho(rho, options, "synapse_search");
  const Relation rel{options.correlation_threshold, options.absolute};
  const float* r = rho.data();
  SynapseSearchResult res = empty_result(K);

  // R_i over the undecided set (all of it at the start). Rows are scanned once each here and
  // once when their vector leaves the undecided set.
  std::vector<int64_t> count(static_cast<size_t>(K), 0);
  std::vector<char> undecided(static_cast<size_t>(K), 1);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < K; ++i) {
    const float* ri = r + i * K;
    int64_t c = 0;
    for (int64_t j = 0; j < K; ++j) c += rel(ri[j]);
    count[i] = c;
  }
  // The undecided indices, kept ascending and compacted as vectors leave (so each round's
  // argmax scans only what is left).
  std::vector<int32_t> live(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) live[i] = static_cast<int32_t>(i);
  std::vector<int32_t> leaving;
  auto leave = [&](int32_t j) {
    // j is no longer undecided: whoever represented it loses one from its count. rho is
    // symmetric, so "i represents j" is row j's entry i.
    undecided[j] = 0;
    const float* rj = r + static_cast<int64_t>(j) * K;
    for (const int32_t i : live)
      if (undecided[i] && rel(rj[i])) --count[i];
  };
  while (!live.empty()) {
    int32_t best = live[0];
    for (const int32_t i : live)
      if (count[i] > count[best]) best = i;   // strict: ties keep the lowest index
    res.retained[best] = 1;
    res.representative[best] = best;
    res.order.push_back(best);
    // Decide every undecided vector best represents (itself excluded), then update the counts.
    leaving.clear();
    leaving.push_back(best);
    undecided[best] = 0;
    const float* rb = r + static_cast<int64_t>(best) * K;
    for (const int32_t j : live) {
      if (undecided[j] && rel(rb[j])) {
        undecided[j] = 0;
        res.representative[j] = best;
        leaving.push_back(j);
      }
    }
    // Compact first so the updates only touch vectors still undecided.
    size_t n = 0;
    for (const int32_t i : live)
      if (undecided[i]) live[n++] = i;
    live.resize(n);
    for (const int32_t j : leaving) leave(j);
  }
  res.greedy_retained = static_cast<int64_t>(res.order.size());
  round_to_alignment(rho, rel, options.align, res);
  return res;
}

SynapseSearchResult synapse_search_ref(const Tensor& rho, const SynapseSearchOptions& options) {
  const int64_t K = check_rho(rho, options, "synapse_search_ref");
  const Relation rel{options.correlation_threshold, options.absolute};
  const float* r = rho.data();
  SynapseSearchResult res = empty_result(K);
  std::vector<char> undecided(static_cast<size_t>(K), 1);
  int64_t left = K;
  while (left > 0) {
    int64_t best = -1, best_count = -1;
    for (int64_t i = 0; i < K; ++i) {
      if (!undecided[i]) continue;
      int64_t c = 0;
      for (int64_t j = 0; j < K; ++j)
        if (undecided[j] && rel(r[i * K + j])) ++c;
      if (c > best_count) best = i, best_count = c;
    }
    res.retained[best] = 1;
    res.representative[best] = static_cast<int32_t>(best);
    res.order.push_back(static_cast<int32_t>(best));
    undecided[best] = 0;
    --left;
    for (int64_t j = 0; j < K; ++j) {
      if (undecided[j] && rel(r[best * K + j])) {
        undecided[j] = 0;
        res.representative[j] = static_cast<int32_t>(best);
        --left;
      }
    }
  }
  res.greedy_retained = static_cast<int64_t>(res.order.size());
  round_to_alignment(rho, rel, options.align, res);
  return res;
}

}  // namespace deftnn
