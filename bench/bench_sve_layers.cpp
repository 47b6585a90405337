// Synapse vector elimination per layer (paper Fig. 10 and Fig. 6), CaffeNet conv2..conv5, fc6,
// fc7 at batch 1 and 32, 50% of the synapse vectors retained (rounded up to a multiple of 8):
//   ratio      = eliminated layer time / dense layer time (reorganisation included; goal <= 0.55)
//   reorg %    = share of the eliminated layer's time spent building the reduced operand
//                (im2col of the retained rows for conv; gathering X's retained columns for fc),
//                timed alone on one thread as a materialised operand. An upper bound: neither
//                layer builds that operand (fission_conv's tile reads the retained rows straight
//                from the padded image copy, which the dense layer makes too; fc's GEMM packing
//                step reads X's retained columns through the index, sgemm_gather)
//   vs copy    = (full im2col + copying the retained rows into a new buffer) / im2col of only the
//                retained rows: how much faster the in-kernel reorganisation is (paper: >= 1.4x)
//   wino ms    = the dense layer as Winograd F(2x2, 3x3) where it applies (3x3: conv3, conv4, conv5),
//                alternated with the others; "vs best" = elim / the faster dense. The dense
//                column is the direct kernel, the one elimination truncates (the paper's baseline).
// Dense and eliminated run alternately in rounds; medians of the rounds are reported.
// Both layers run as in an inference session (Model::freeze: weights packed once, as the Plan
// of the design packs them offline); --per-call-packing re-packs the weights on every call, as
// an unfrozen model does (CaffeNet conv5 at batch 1: ~30% of the dense layer's time).
// Usage: bench_sve_layers [--json out.json] [--rounds R] [--keep 0.5] [--cputime] [--per-call-packing]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "deftnn/gemm.h"
#include "deftnn/layer.h"
#include "deftnn/profile.h"
#include "deftnn/rng.h"
#include "deftnn/tensor.h"
#include "ops/im2col.h"

using namespace deftnn;

namespace {

// --cputime: time by CPU time, the calling thread's with one thread, the whole process's (every
// thread of the team, summed) with more. On the shared 2-core machine at load 5-8, wall time
// charges a call for every preemption it sits through, which inflates long calls (the layer)
// more often than short ones (the reorganisation alone); with 2 threads a preempted team member
// stalls the other at the barrier. Summed CPU time counts the work and the synchronisation a
// team costs, not its idle waits (run with OMP_WAIT_POLICY=passive, else spinning counts).
bool g_cputime = false;

double now_ms() {
  if (g_cputime) {
    timespec t;
    clock_gettime(omp_get_max_threads() == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID, &t);
    return 1e3 * static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_nsec);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double time_ms(const std::function<void()>& fn, int iters) {
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const double t0 = now_ms();
    fn();
    t.push_back(now_ms() - t0);
  }
  return median(t);
}

struct Spec {
  const char* name;
  bool conv;
  int64_t C, H, W, O, k, pad, groups;   // conv; fc uses C = inputs, O = outputs
};

std::vector<int64_t> pick_retained(int64_t groups, int64_t K, int64_t keep, Rng& rng) {
  std::vector<int64_t> all;
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> idx(static_cast<size_t>(K));
    std::iota(idx.begin(), idx.end(), 0);
    for (int64_t i = K - 1; i > 0; --i)
      std::swap(idx[i], idx[static_cast<int64_t>(rng.uniform() * static_cast<double>(i + 1)) % (i + 1)]);
    idx.resize(static_cast<size_t>(keep));
    std::sort(idx.begin(), idx.end());   // as the paper's swaps leave them: mostly ascending
    all.insert(all.end(), idx.begin(), idx.end());
  }
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  int rounds = 5;
  double keep_frac = 0.5;
  bool frozen = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--keep" && i + 1 < argc) keep_frac = std::atof(argv[++i]);
    else if (a == "--cputime") g_cputime = true;
    else if (a == "--per-call-packing") frozen = false;
    else {
      std::fprintf(stderr, "usage: bench_sve_layers [--json out.json] [--rounds R] [--keep 0.5] [--cputime] "
                           "[--per-call-packing]\n");
      return 2;
    }
  }
  const std::vector<Spec> specs = {
      {"conv2", true, 96, 27, 27, 256, 5, 2, 2},   {"conv3", true, 256, 13, 13, 384, 3, 1, 1},
      {"conv4", true, 384, 13, 13, 384, 3, 1, 2},  {"conv5", true, 384, 13, 13, 256, 3, 1, 2},
      {"fc6", false, 9216, 1, 1, 4096, 1, 0, 1},   {"fc7", false, 4096, 1, 1, 4096, 1, 0, 1},
  };
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::printf("synapse vector elimination per layer, %.0f%% retained (multiple of 8), %d thread(s), %s, %d rounds, %s, %s, load %.2f\n",
              100 * keep_frac, omp_get_max_threads(), active_gemm_kernel(), rounds,
              g_cputime ? (omp_get_max_threads() == 1 ? "thread CPU time" : "process CPU time (all threads)")
                        : "wall time",
              frozen ? "weights packed once (frozen)" : "weights packed per call", load);
  std::printf("%-6s %5s %6s %6s %10s %10s %7s %8s %8s %9s %8s\n", "layer", "batch", "K", "K'",
              "dense ms", "elim ms", "ratio", "reorg %", "vs copy", "wino ms", "vs best");
  std::string js = "{\"clock\": \"" + std::string(g_cputime ? (omp_get_max_threads() == 1 ? "thread_cputime" : "process_cputime") : "wall") + "\", \"load\": " +
                   std::to_string(load) + ", \"threads\": " + std::to_string(omp_get_max_threads()) + ", \"kernel\": \"" +
                   active_gemm_kernel() + "\", \"keep\": " + std::to_string(keep_frac) +
                   ", \"frozen\": " + (frozen ? "true" : "false") + ", \"layers\": [";
  bool first = true;
  Rng rng(7);
  for (const Spec& s : specs) {
    for (int64_t N : {int64_t{1}, int64_t{32}}) {
      const int iters = N == 1 ? 10 : 2;
      Attrs a;
      Shape in;
      int64_t K;
      ops::ConvGeom g;
      if (s.conv) {
        a.set("out_channels", s.O).set("kernel", s.k).set("pad", s.pad).set("groups", s.groups);
        in = {N, s.C, s.H, s.W};
        g.C = s.C / s.groups;
        g.H = s.H;
        g.W = s.W;
        g.kh = g.kw = s.k;
        g.pt = g.pl = s.pad;
        g.OH = s.H + 2 * s.pad - s.k + 1;
        g.OW = s.W + 2 * s.pad - s.k + 1;
        K = g.rows();
      } else {
        a.set("out_features", s.O);
        in = {N, s.C};
        K = s.C;
      }
      int64_t keep = static_cast<int64_t>(keep_frac * static_cast<double>(K) + 0.5);
      keep = std::min(K, (keep + 7) / 8 * 8);
      const std::vector<int64_t> ret = pick_retained(s.conv ? s.groups : 1, K, keep, rng);
      auto dense = make_layer(s.conv ? "conv" : "fc", a);
      Attrs ae = a;
      ae.set("retained", ret);
      auto elim = make_layer(s.conv ? "conv" : "fc", ae);
      dense->infer({in});
      elim->infer({in});
      Rng r2(1);
      dense->init_params(r2);
      elim->init_params(r2);
      Tensor x(in);
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = r2.uniform(0.0f, 1.0f);
      Tensor y;
      RunContext ctx;
      ctx.frozen = frozen;
      const std::vector<const Tensor*> xin{&x};
      dense->forward(xin, y, ctx);
      elim->forward(xin, y, ctx);
      std::vector<double> td, te, tr, tc, tw;
      const bool wino = s.conv && s.k == 3;
      if (wino) {   // the Winograd weights transformed before timing
        set_winograd_policy(WinogradPolicy::on);
        dense->forward(xin, y, ctx);
      }
      set_winograd_policy(WinogradPolicy::off);
      // The reorganisation alone, per call of the layer: conv, im2col of the retained rows of
      // every image and group; fc, the gather of X's retained columns.
      const int64_t P = g.cols();
      std::vector<float> buf(static_cast<size_t>(s.conv ? K * P : N * keep));
      std::vector<float> full(static_cast<size_t>(s.conv ? K * P : 1));
      auto reorg = [&] {
        if (s.conv) {
          for (int64_t n = 0; n < N; ++n)
            for (int64_t gi = 0; gi < s.groups; ++gi)
              ops::im2col_rows(g, x.data() + (n * s.C + gi * g.C) * s.H * s.W, ret.data() + gi * keep,
                               keep, buf.data());
        } else {
          for (int64_t n = 0; n < N; ++n)
            for (int64_t p = 0; p < keep; ++p) buf[n * keep + p] = x[n * K + ret[p]];
        }
      };
      // The alternative of Fig. 6: build the full operand, then copy the retained rows out.
      auto copy_rows = [&] {
        for (int64_t n = 0; n < N; ++n)
          for (int64_t gi = 0; gi < s.groups; ++gi) {
            ops::im2col(g, x.data() + (n * s.C + gi * g.C) * s.H * s.W, full.data());
            for (int64_t p = 0; p < keep; ++p)
              std::memcpy(buf.data() + p * P, full.data() + ret[gi * keep + p] * P, sizeof(float) * P);
          }
      };
      for (int rd = 0; rd < rounds; ++rd) {
        td.push_back(time_ms([&] { dense->forward(xin, y, ctx); }, iters));
        if (wino) {
          set_winograd_policy(WinogradPolicy::on);
          tw.push_back(time_ms([&] { dense->forward(xin, y, ctx); }, iters));
          set_winograd_policy(WinogradPolicy::off);
        }
        te.push_back(time_ms([&] { elim->forward(xin, y, ctx); }, iters));
        tr.push_back(time_ms(reorg, iters));
        if (s.conv) tc.push_back(time_ms(copy_rows, iters));
      }
      const double md = median(td), me = median(te), mr = median(tr), mc = s.conv ? median(tc) : 0;
      const double mw = wino ? median(tw) : 0;
      char vs[32] = "-", ws[32] = "-", vb[32] = "-";
      if (s.conv) std::snprintf(vs, sizeof vs, "%.2fx", mc / mr);
      if (wino) {
        std::snprintf(ws, sizeof ws, "%.3f", mw);
        std::snprintf(vb, sizeof vb, "%.3f", me / std::min(md, mw));
      }
      std::printf("%-6s %5lld %6lld %6lld %10.3f %10.3f %7.3f %7.1f%% %8s %9s %8s\n", s.name,
                  static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(keep), md,
                  me, me / md, 100 * mr / me, vs, ws, vb);
      std::fflush(stdout);
      char line[512];
      std::snprintf(line, sizeof line,
                    "%s\n  {\"layer\": \"%s\", \"batch\": %lld, \"K\": %lld, \"kept\": %lld, \"dense_ms\": %.6f, "
                    "\"elim_ms\": %.6f, \"ratio\": %.6f, \"reorg_ms\": %.6f, \"reorg_share\": %.6f, "
                    "\"copy_ms\": %.6f, \"winograd_ms\": %.6f}",
                    first ? "" : ",", s.name, static_cast<long long>(N), static_cast<long long>(K),
                    static_cast<long long>(keep), md, me, me / md, mr, mr / me, mc, mw);
      js += line;
      first = false;
    }
  }
  js += "\n]}\n";
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << js;
    if (!f) {
      std::fprintf(stderr, "cannot write '%s'\n", json_path.c_str());
      return 1;
    }
  }
  return 0;
}
