// The magnitude-pruning baseline of the paper's §5.8, measured on this machine:
//  (a) density sweep: dense sgemm vs CSR spmm on CaffeNet's GEMM shapes, side by side in one run
//      (medians of repeats), and the crossover density below which the sparse kernel wins
//      (paper: 2.5% on the GPU);
//  (b) a pruned CaffeNet at batch 1: per-layer dense vs sparse GEMM time at Han et al.'s
//      densities (and at the uniform conv 11% / fc 9% profile), summed, an end-to-end estimate
//      (measured dense forward with the dense GEMM time swapped for the sparse one), and the
//      pruned model measured end to end with the engine's dense and sparse kernels
//      (SparsePolicy off / auto: the direct sparse conv, not the GEMM of the estimate);
//  (c) --lenet MODEL: prune a trained LeNet (Fashion-MNIST) to 50/25/10/5%, retrain, report
//      accuracy vs density, the pruned model's per-layer dense vs sparse GEMM time, and its
//      end-to-end time with the dense and sparse kernels at batch 1 and --batch.
//   bench_prune [--threads T] [--json PATH] [--quick] [--cputime] [--no-sweep] [--no-caffenet]
//               [--lenet MODEL [--retrain-epochs E] [--lr LR] [--limit N] [--batch B]
//                [--skip-first-conv] [--skip-last-fc]]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/gemm.h"
#include "deftnn/io.h"
#include "deftnn/profile.h"
#include "deftnn/prune.h"
#include "deftnn/rng.h"
#include "deftnn/train.h"
#include "deftnn/zoo.h"

using namespace deftnn;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool g_quick = false;
bool g_cputime = false;

// --cputime: intervals are measured in CPU time of the process (CLOCK_PROCESS_CPUTIME_ID), which
// excludes the time the threads sat preempted by other tenants. With --threads 1 that is the
// kernel's own cost even on an oversubscribed machine; with more threads it also counts OpenMP
// spin-waiting, so use it with one thread.
double interval_clock() {
  if (!g_cputime) return now_s();
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Ms { double med = 0, min = 0; };

// Wall time in ms of fn(), median and minimum: one warm-up, then at least 9 runs and until
// ~0.4 s (0.1 s with --quick) or 200 runs. On a shared, oversubscribed machine the median carries
// the other tenants' load; the minimum is the closest to the kernel's own cost.
Ms time_ms(const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  const double budget = g_quick ? 0.1 : 0.4;
  const double start = now_s();
  while (t.size() < 9 || (now_s() - start < budget && t.size() < 200)) {
    const double t0 = interval_clock();
    fn();
    t.push_back((interval_clock() - t0) * 1e3);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

std::vector<float> random_vec(int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// Magnitude pruning of a random Gaussian matrix to `density`: the survivors are the largest |w|,
// i.e. uniformly scattered positions, as in a pruned layer.
std::vector<float> pruned_copy(const std::vector<float>& a, double density) {
  std::vector<float> mags(a.size());
  for (size_t i = 0; i < a.size(); ++i) mags[i] = std::fabs(a[i]);
  const int64_t keep = std::llround(density * static_cast<double>(a.size()));
  std::vector<float> out(a.size(), 0.0f);
  if (keep <= 0) return out;
  std::nth_element(mags.begin(), mags.begin() + (keep - 1), mags.end(), std::greater<float>());
  const float thr = mags[keep - 1];
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i]) >= thr) out[i] = a[i];
  return out;
}

struct GemmShape { std::string name; int64_t M, K, N; int groups; };

// ---- (a) density sweep ----
struct SweepRow { double density; double sparse_ms, sparse_min; int64_t nnz; };
struct SweepShape {
  GemmShape s;
  double dense_ms, dense_min;
  std::vector<SweepRow> rows;
  double crossover, crossover_min;
};

// Density below which sparse beats dense: the sweep (density descending) is read from the
// sparsest end, and the crossover is interpolated in log-density between the last losing point
// and the first point of the winning run (so a noisy win at a high density, with losses below
// it, does not count). 0 when sparse never wins, the first density when it always wins.
double crossover(const std::vector<double>& density, const std::vector<double>& sparse,
                 double dense) {
  size_t i = density.size();
  while (i > 0 && sparse[i - 1] < dense) --i;   // points i.. all win
  if (i == density.size()) return 0.0;
  if (i == 0) return density[0];
  const double d0 = density[i - 1], d1 = density[i];
  const double t0 = std::log(sparse[i - 1] / dense);   // >= 0
  const double t1 = std::log(sparse[i] / dense);       // < 0
  const double f = t0 / (t0 - t1);
  return std::exp(std::log(d0) + f * (std::log(d1) - std::log(d0)));
}

std::vector<SweepShape> run_sweep(const std::vector<double>& densities) {
  const std::vector<GemmShape> shapes = {
      {"conv2/group", 128, 1200, 729, 1}, {"conv3", 384, 2304, 169, 1},
      {"conv4/group", 192, 1728, 169, 1}, {"conv5/group", 128, 1728, 169, 1},
      {"fc6 b1", 4096, 9216, 1, 1},        {"fc6 b32", 4096, 9216, 32, 1},
      {"fc7 b1", 4096, 4096, 1, 1},        {"fc7 b32", 4096, 4096, 32, 1}};
  std::vector<SweepShape> out;
  Rng rng(2015);
  std::printf("\n(a) density sweep: dense sgemm vs CSR spmm (%s), ms, medians\n", active_spmm_kernel());
  std::printf("%-12s %5s %5s %4s %9s", "shape", "M", "K", "N", "dense");
  for (double d : densities) std::printf(" %8.1f%%", 100 * d);
  std::printf("  crossover\n");
  for (const GemmShape& s : shapes) {
    const std::vector<float> A = random_vec(s.M * s.K, rng), B = random_vec(s.K * s.N, rng);
    std::vector<float> C(static_cast<size_t>(s.M * s.N));
    SweepShape r{s, 0, 0, {}, 0, 0};
    const Ms dt = time_ms([&] {
      sgemm(false, false, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.N, 0.0f, C.data(), s.N);
    });
    r.dense_ms = dt.med;
    r.dense_min = dt.min;
    std::printf("%-12s %5lld %5lld %4lld %9.3f", s.name.c_str(), (long long)s.M, (long long)s.K,
                (long long)s.N, r.dense_ms);
    std::fflush(stdout);
    for (double d : densities) {
      const std::vector<float> Ad = pruned_copy(A, d);
      const CsrMatrix csr = CsrMatrix::from_dense(Ad.data(), s.M, s.K, s.K);
      const Ms t = time_ms([&] { spmm(csr, B.data(), s.N, s.N, C.data(), s.N); });
      r.rows.push_back({d, t.med, t.min, csr.nnz()});
      std::printf(" %9.3f", t.med);
      std::fflush(stdout);
    }
    std::vector<double> med, mn;
    for (const auto& row : r.rows) {
      med.push_back(row.sparse_ms);
      mn.push_back(row.sparse_min);
    }
    r.crossover = crossover(densities, med, r.dense_ms);
    r.crossover_min = crossover(densities, mn, r.dense_min);
    if (r.crossover <= 0) std::printf("  never (<%.1f%%)\n", 100 * densities.back());
    else std::printf("  %.2f%%\n", 100 * r.crossover);
    out.push_back(std::move(r));
  }
  std::printf("minimum times (least disturbed by other load), ms:\n");
  for (const auto& r : out) {
    std::printf("%-12s %5lld %5lld %4lld %9.3f", r.s.name.c_str(), (long long)r.s.M,
                (long long)r.s.K, (long long)r.s.N, r.dense_min);
    for (const auto& row : r.rows) std::printf(" %9.3f", row.sparse_min);
    if (r.crossover_min <= 0) std::printf("  never (<%.1f%%)\n", 100 * densities.back());
    else std::printf("  %.2f%%\n", 100 * r.crossover_min);
  }
  std::printf("ratio dense/sparse of the minima (> 1: the sparse kernel is faster)\n");
  for (const auto& r : out) {
    std::printf("%-12s", r.s.name.c_str());
    for (const auto& row : r.rows) std::printf(" %7.2fx", r.dense_min / row.sparse_min);
    std::printf("\n");
  }
  return out;
}

// ---- per-layer GEMMs of a model ----
struct LayerTime {
  std::string name;
  int64_t M, K, N;
  int groups;
  double density, dense_ms, sparse_ms, dense_min, sparse_min;
};

// Times every conv/fc layer's GEMM(s) of `model` at `batch` (conv: per group,
// W_g (O/g x K) * columns (K x OH*OW*batch), images side by side as the conv layer does; fc:
// W (O x I) * X^T (I x batch)) with the dense kernel and with CSR built from the model's
// (pruned) weights. Inputs are random: the values do not change the time.
std::vector<LayerTime> time_layers(Model& model, int64_t batch) {
  std::vector<LayerTime> out;
  const std::vector<Shape> shapes = model.value_shapes(batch);
  Rng rng(7);
  for (size_t i = 0; i < model.nodes().size(); ++i) {
    Node& nd = model.nodes()[i];
    const std::string t = nd.layer->type();
    if (t != "conv" && t != "fc") continue;
    const Tensor& w = nd.layer->param("weight")->value;
    const Shape& os = shapes[i + 1];
    const int64_t O = w.dim(0), K = w.numel() / O;
    const int g = t == "conv" ? static_cast<int>(nd.layer->attrs().get_int("groups", 1)) : 1;
    const int64_t M = O / g;
    const int64_t N = t == "conv" ? os[2] * os[3] * batch : batch;
    std::vector<CsrMatrix> csr;
    int64_t nnz = 0;
    for (int gi = 0; gi < g; ++gi) {
      csr.push_back(CsrMatrix::from_dense(w.data() + gi * M * K, M, K, K));
      nnz += csr.back().nnz();
    }
    const std::vector<float> B = random_vec(K * N, rng);
    std::vector<float> C(static_cast<size_t>(M * N));
    LayerTime lt{nd.name, M, K, N, g, static_cast<double>(nnz) / static_cast<double>(w.numel()),
                 0, 0, 0, 0};
    const Ms dt = time_ms([&] {
      for (int gi = 0; gi < g; ++gi)
        sgemm(false, false, M, N, K, 1.0f, w.data() + gi * M * K, K, B.data(), N, 0.0f, C.data(), N);
    });
    const Ms st = time_ms([&] {
      for (int gi = 0; gi < g; ++gi) spmm(csr[gi], B.data(), N, N, C.data(), N);
    });
    lt.dense_ms = dt.med;
    lt.dense_min = dt.min;
    lt.sparse_ms = st.med;
    lt.sparse_min = st.min;
    out.push_back(lt);
  }
  return out;
}

void print_layers(const std::vector<LayerTime>& ls) {
  std::printf("%-8s %2s %5s %5s %6s %8s %10s %10s %9s %10s %10s %9s\n", "layer", "g", "M", "K", "N",
              "density", "dense med", "sparse med", "dense/sp", "dense min", "sparse min", "dense/sp");
  double td = 0, ts = 0, tdm = 0, tsm = 0;
  for (const auto& l : ls) {
    std::printf("%-8s %2d %5lld %5lld %6lld %7.1f%% %10.3f %10.3f %8.2fx %10.3f %10.3f %8.2fx\n",
                l.name.c_str(), l.groups, (long long)l.M, (long long)l.K, (long long)l.N,
                100 * l.density, l.dense_ms, l.sparse_ms, l.dense_ms / l.sparse_ms, l.dense_min,
                l.sparse_min, l.dense_min / l.sparse_min);
    td += l.dense_ms;
    ts += l.sparse_ms;
    tdm += l.dense_min;
    tsm += l.sparse_min;
  }
  std::printf("%-8s %39s %10.3f %10.3f %8.2fx %10.3f %10.3f %8.2fx\n", "sum", "", td, ts, td / ts,
              tdm, tsm, tdm / tsm);
}

double sum_dense(const std::vector<LayerTime>& v) {
  double s = 0;
  for (const auto& l : v) s += l.dense_ms;
  return s;
}
double sum_sparse(const std::vector<LayerTime>& v) {
  double s = 0;
  for (const auto& l : v) s += l.sparse_ms;
  return s;
}
double sum_dense_min(const std::vector<LayerTime>& v) {
  double s = 0;
  for (const auto& l : v) s += l.dense_min;
  return s;
}
double sum_sparse_min(const std::vector<LayerTime>& v) {
  double s = 0;
  for (const auto& l : v) s += l.sparse_min;
  return s;
}

void json_layers(FILE* f, const std::vector<LayerTime>& ls) {
  std::fprintf(f, "[");
  for (size_t i = 0; i < ls.size(); ++i) {
    const auto& l = ls[i];
    std::fprintf(f, "%s{\"layer\": \"%s\", \"groups\": %d, \"M\": %lld, \"K\": %lld, \"N\": %lld, "
                    "\"density\": %.5f, \"dense_ms\": %.4f, \"sparse_ms\": %.4f, "
                    "\"dense_min_ms\": %.4f, \"sparse_min_ms\": %.4f}",
                 i ? ", " : "", l.name.c_str(), l.groups, (long long)l.M, (long long)l.K,
                 (long long)l.N, l.density, l.dense_ms, l.sparse_ms, l.dense_min, l.sparse_min);
  }
  std::fprintf(f, "]");
}

// End to end, measured (not estimated): the unpruned model, the pruned one with the dense
// kernels (SparsePolicy::off: the zeros multiplied like any weight) and the pruned one with the
// sparse kernels where the policy picks them (automatic), all frozen, in alternating rounds;
// medians of the round medians.
struct E2E { int64_t batch = 0; double base_ms = 0, dense_ms = 0, sparse_ms = 0; };
E2E time_e2e(Model& base, Model& pruned, int64_t batch) {
  Shape sh{batch};
  sh.insert(sh.end(), base.input_shape().begin(), base.input_shape().end());
  Tensor x(sh);
  Rng rng(5);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(rng.uniform());
  const SparsePolicy saved = sparse_policy();
  base.freeze(true);
  pruned.freeze(true);
  std::vector<double> tb, td, ts;
  for (int r = 0; r < (g_quick ? 3 : 7); ++r) {
    set_sparse_policy(SparsePolicy::off);
    tb.push_back(time_ms([&] { base.forward(x); }).med);
    td.push_back(time_ms([&] { pruned.forward(x); }).med);
    set_sparse_policy(SparsePolicy::automatic);
    ts.push_back(time_ms([&] { pruned.forward(x); }).med);
  }
  set_sparse_policy(saved);
  base.freeze(false);
  pruned.freeze(false);
  return {batch, median(tb), median(td), median(ts)};
}

void print_e2e(const E2E& e) {
  std::printf("measured end to end, batch %lld: unpruned %.3f ms; pruned, dense kernels %.3f ms "
              "(%.2fx); pruned, sparse kernels (--sparse auto) %.3f ms (%.2fx)\n",
              (long long)e.batch, e.base_ms, e.dense_ms, e.base_ms / e.dense_ms, e.sparse_ms,
              e.base_ms / e.sparse_ms);
}

void json_e2e(FILE* f, const E2E& e) {
  std::fprintf(f, "{\"batch\": %lld, \"unpruned_ms\": %.4f, \"pruned_dense_ms\": %.4f, "
                  "\"pruned_sparse_ms\": %.4f}",
               (long long)e.batch, e.base_ms, e.dense_ms, e.sparse_ms);
}

// ---- (b) pruned CaffeNet ----
struct Profile { std::string name; std::vector<std::pair<std::string, double>> density; };
struct CaffeResult { Profile p; std::vector<LayerTime> layers; Ms forward_dense; E2E e2e; };

std::vector<CaffeResult> run_caffenet() {
  // Han et al. 2015, Table 4 (AlexNet): per-layer densities after pruning + retraining
  // (total 11%). And the uniform profile "conv 11% / fc 9%".
  const std::vector<Profile> profiles = {
      {"han2015", {{"conv1", 0.84}, {"conv2", 0.38}, {"conv3", 0.35}, {"conv4", 0.37},
                   {"conv5", 0.37}, {"fc6", 0.09}, {"fc7", 0.09}, {"fc8", 0.25}}},
      {"conv11_fc9", {{"conv1", 0.11}, {"conv2", 0.11}, {"conv3", 0.11}, {"conv4", 0.11},
                      {"conv5", 0.11}, {"fc6", 0.09}, {"fc7", 0.09}, {"fc8", 0.09}}}};
  std::printf("\n(b) pruned CaffeNet, batch 1 (random weights pruned by magnitude)\n");
  Model m = build_zoo("caffenet");
  m.init_params(1);
  // Dense end-to-end forward at batch 1 (the weights' values do not change its time).
  Tensor x(Shape{1, 3, 227, 227});
  Rng rng(3);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(rng.uniform());
  const Ms fwd = time_ms([&] { m.forward(x); });
  std::vector<CaffeResult> out;
  for (const Profile& p : profiles) {
    Model mp = build_zoo("caffenet");
    mp.init_params(1);
    PruneOptions o;
    o.layer_density = p.density;
    const PruneResult pr = prune_by_magnitude(mp, 1.0, o);
    std::printf("profile %s: %.1f%% of conv/fc weights kept\n", p.name.c_str(), 100 * pr.density());
    CaffeResult r{p, time_layers(mp, 1), fwd, {}};
    print_layers(r.layers);
    for (int k = 0; k < 2; ++k) {
      const double f = k ? fwd.min : fwd.med;
      const double d = k ? sum_dense_min(r.layers) : sum_dense(r.layers);
      const double s = k ? sum_sparse_min(r.layers) : sum_sparse(r.layers);
      const double other = std::max(0.0, f - d);
      std::printf("end-to-end from %s: dense forward %.2f ms measured, %.2f ms outside the GEMMs; "
                  "with the dense kernel %.2f ms, with the sparse kernel %.2f ms -> %.2fx\n",
                  k ? "minima " : "medians", f, other, other + d, other + s, (other + d) / (other + s));
    }
    r.e2e = time_e2e(m, mp, 1);
    print_e2e(r.e2e);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- (c) LeNet on Fashion-MNIST ----
struct LenetRow {
  double density, kept_density, acc_pruned, acc_retrained;
  std::vector<LayerTime> b1, bN;
  E2E e1, eN;
};

struct LenetResult { std::string model; double acc_dense; int epochs; double lr; int64_t batch;
                     std::vector<LenetRow> rows; };

LenetResult run_lenet(const std::string& path, int epochs, double lr, int64_t limit, int64_t batch,
                      const PruneOptions& popt) {
  LenetResult res{path, 0, epochs, lr, batch, {}};
  Model m0 = load_model(path);
  Dataset tr = load_fashion_mnist("", true, limit);
  Dataset te = load_fashion_mnist("", false);
  const int64_t H = m0.input_shape().size() == 3 ? m0.input_shape()[1] : 28;
  if (H > 28) {
    tr = pad_images(tr, static_cast<int>((H - 28) / 2));
    te = pad_images(te, static_cast<int>((H - 28) / 2));
  }
  res.acc_dense = evaluate(m0, te, 256, false).top1;
  std::printf("\n(c) %s on Fashion-MNIST: dense test top-1 %.2f%%; prune per layer, retrain %d "
              "epoch(s) at lr %g on %lld images\n",
              path.c_str(), 100 * res.acc_dense, epochs, lr, (long long)tr.size());
  std::printf("%8s %8s %12s %12s %10s\n", "target", "kept", "pruned top1", "retrained", "loss pts");
  for (const double d : {0.5, 0.25, 0.10, 0.05}) {
    Model m = load_model(path);
    const PruneResult pr = prune_by_magnitude(m, d, popt);
    LenetRow row{d, pr.density(), evaluate(m, te, 256, false).top1, 0, {}, {}, {}, {}};
    TrainConfig cfg;
    cfg.epochs = epochs;
    cfg.lr = lr;
    cfg.batch = 64;
    cfg.progress = false;
    retrain_pruned(m, pr, tr, nullptr, cfg);
    row.acc_retrained = evaluate(m, te, 256, false).top1;
    std::printf("%7.1f%% %7.2f%% %11.2f%% %11.2f%% %10.2f\n", 100 * d, 100 * row.kept_density,
                100 * row.acc_pruned, 100 * row.acc_retrained, 100 * (res.acc_dense - row.acc_retrained));
    std::fflush(stdout);
    row.b1 = time_layers(m, 1);
    row.bN = time_layers(m, batch);
    row.e1 = time_e2e(m0, m, 1);
    row.eN = time_e2e(m0, m, batch);
    res.rows.push_back(std::move(row));
  }
  for (const auto& r : res.rows) {
    std::printf("\nLeNet pruned to %.0f%%: per-layer GEMM time, batch 1\n", 100 * r.density);
    print_layers(r.b1);
    std::printf("batch %lld\n", (long long)batch);
    print_layers(r.bN);
    print_e2e(r.e1);
    print_e2e(r.eN);
  }
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::string json_path, lenet;
  bool sweep = true, caffenet = true;
  int epochs = 1;
  double lr = 0.001;
  int64_t limit = -1, batch = 64;
  PruneOptions popt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_prune: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--json") json_path = next();
    else if (a == "--quick") g_quick = true;
    else if (a == "--cputime") g_cputime = true;
    else if (a == "--skip-first-conv") popt.skip_first_conv = true;
    else if (a == "--skip-last-fc") popt.skip_last_fc = true;
    else if (a == "--no-sweep") sweep = false;
    else if (a == "--no-caffenet") caffenet = false;
    else if (a == "--lenet") lenet = next();
    else if (a == "--retrain-epochs") epochs = std::atoi(next().c_str());
    else if (a == "--lr") lr = std::atof(next().c_str());
    else if (a == "--limit") limit = std::atoll(next().c_str());
    else if (a == "--batch") batch = std::atoll(next().c_str());
    else {
      std::fprintf(stderr,
                   "usage: bench_prune [--threads T] [--json PATH] [--quick] [--cputime] [--no-sweep] "
                   "[--no-caffenet] [--lenet MODEL [--retrain-epochs E] [--lr LR] [--limit N] "
                   "[--batch B] [--skip-first-conv] [--skip-last-fc]]\n");
      return 2;
    }
  }
  if (threads < 1 || batch < 1 || epochs < 0) {
    std::fprintf(stderr, "bench_prune: --threads, --batch must be >= 1, --retrain-epochs >= 0\n");
    return 2;
  }
  omp_set_num_threads(threads);
  std::printf("bench_prune: %d threads, gemm %s, spmm %s, times in %s\n", threads,
              active_gemm_kernel(), active_spmm_kernel(),
              g_cputime ? "process CPU time (--cputime)" : "wall-clock time");
  try {
    const std::vector<double> densities = {1.0, 0.5, 0.25, 0.10, 0.05, 0.025, 0.01, 0.005};
    std::vector<SweepShape> sw;
    std::vector<CaffeResult> cn;
    LenetResult ln;
    if (sweep) sw = run_sweep(densities);
    if (caffenet) cn = run_caffenet();
    if (!lenet.empty()) ln = run_lenet(lenet, epochs, lr, limit, batch, popt);
    if (!json_path.empty()) {
      FILE* f = std::fopen(json_path.c_str(), "w");
      if (!f) {
        std::fprintf(stderr, "bench_prune: cannot write %s\n", json_path.c_str());
        return 1;
      }
      std::fprintf(f, "{\"threads\": %d, \"clock\": \"%s\", \"gemm_kernel\": \"%s\", "
                      "\"spmm_kernel\": \"%s\",\n",
                   threads, g_cputime ? "process_cpu" : "wall", active_gemm_kernel(),
                   active_spmm_kernel());
      std::fprintf(f, " \"sweep\": [");
      for (size_t i = 0; i < sw.size(); ++i) {
        const auto& s = sw[i];
        std::fprintf(f, "%s\n  {\"shape\": \"%s\", \"M\": %lld, \"K\": %lld, \"N\": %lld, "
                        "\"dense_ms\": %.4f, \"dense_min_ms\": %.4f, \"crossover_density\": %.5f, "
                        "\"crossover_density_min\": %.5f, \"sparse\": [",
                     i ? "," : "", s.s.name.c_str(), (long long)s.s.M, (long long)s.s.K,
                     (long long)s.s.N, s.dense_ms, s.dense_min, s.crossover, s.crossover_min);
        for (size_t j = 0; j < s.rows.size(); ++j)
          std::fprintf(f, "%s{\"density\": %.4f, \"nnz\": %lld, \"sparse_ms\": %.4f, "
                          "\"sparse_min_ms\": %.4f}", j ? ", " : "", s.rows[j].density,
                       (long long)s.rows[j].nnz, s.rows[j].sparse_ms, s.rows[j].sparse_min);
        std::fprintf(f, "]}");
      }
      std::fprintf(f, "],\n \"caffenet\": [");
      for (size_t i = 0; i < cn.size(); ++i) {
        std::fprintf(f, "%s\n  {\"profile\": \"%s\", \"forward_dense_ms\": %.4f, \"layers\": ",
                     i ? "," : "", cn[i].p.name.c_str(), cn[i].forward_dense.med);
        json_layers(f, cn[i].layers);
        std::fprintf(f, ", \"end_to_end\": ");
        json_e2e(f, cn[i].e2e);
        std::fprintf(f, "}");
      }
      std::fprintf(f, "]");
      if (!lenet.empty()) {
        std::fprintf(f, ",\n \"lenet\": {\"model\": \"%s\", \"dense_top1\": %.5f, \"retrain_epochs\": %d, "
                        "\"lr\": %g, \"batch\": %lld, \"skip_first_conv\": %s, \"skip_last_fc\": %s, \"rows\": [",
                     ln.model.c_str(), ln.acc_dense, ln.epochs, ln.lr, (long long)ln.batch,
                     popt.skip_first_conv ? "true" : "false", popt.skip_last_fc ? "true" : "false");
        for (size_t i = 0; i < ln.rows.size(); ++i) {
          const auto& r = ln.rows[i];
          std::fprintf(f, "%s\n  {\"target_density\": %.3f, \"kept_density\": %.5f, "
                          "\"pruned_top1\": %.5f, \"retrained_top1\": %.5f, \"layers_b1\": ",
                       i ? "," : "", r.density, r.kept_density, r.acc_pruned, r.acc_retrained);
          json_layers(f, r.b1);
          std::fprintf(f, ", \"layers_batch\": ");
          json_layers(f, r.bN);
          std::fprintf(f, ", \"end_to_end\": [");
          json_e2e(f, r.e1);
          std::fprintf(f, ", ");
          json_e2e(f, r.eN);
          std::fprintf(f, "]}");
        }
        std::fprintf(f, "]}");
      }
      std::fprintf(f, "\n}\n");
      std::fclose(f);
      std::printf("\nwrote %s\n", json_path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_prune: %s\n", e.what());
    return 1;
  }
  return 0;
}
