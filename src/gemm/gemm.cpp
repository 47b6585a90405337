// deftnn fp32 GEMM: the BLIS five loops around a per-ISA micro-kernel, OpenMP threading, and
// the memory-bound GEMV path for N == 1 / M == 1. Kernels and block sizes come from config.cpp.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/tensor.h"
#include "gemm/buffer.h"
#include "gemm/pack.h"
#include "gemm/ukernel.h"

namespace deftnn {
namespace gemm {

// Threads for a problem of this many flops: below ~1 MFLOP the fork/barriers cost more.
int team_size(double flops) {
  if (omp_in_parallel() || flops < 2.0e5) return 1;
  return std::max(1, omp_get_max_threads());
}

namespace {

int64_t g_kc_override = 0, g_mc_override = 0, g_nc_override = 0;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Per-thread buffers (gemm/buffer.h) for packed A and packed B.
thread_local Buffer t_pack_a;           // a thread's whole copy of op(A) (columns split)
thread_local Buffer t_pack_b;           // a thread's whole copy of op(B)'s block (rows split)
thread_local Buffer t_pack_a_private;   // a thread's own rows of op(A) (rows split)
thread_local Buffer t_pack_b_private;   // a thread's own panels of op(B) (columns split)
thread_local Buffer t_vec;      // GEMV: contiguous x / y copies
thread_local Buffer t_gather_a, t_gather_b;   // sgemm_gather's GEMV shapes: gathered operands



// ---- the five loops -------------------------------------------------------------------------

struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  // Synapse vector elimination: op(A)'s column k is stored column akidx[k], op(B)'s row k is
  // stored row bkidx[k] (null: the identity). Gathered by the packing step (pack.h).
  const int64_t* akidx = nullptr;
  const int64_t* bkidx = nullptr;
};

int64_t config_kc(const GemmConfig& cfg) { return g_kc_override ? g_kc_override : cfg.kc; }

// Largest operand (floats) a thread packs whole, for all of K.
constexpr int64_t kWholePackMax = int64_t{1} << 22;   // 16 MiB

// The five loops, threaded with dynamic work sharing and no barrier inside.
//
// Per NC-wide block of columns the team splits ONE dimension into work units handed out
// dynamically (omp schedule(dynamic)): groups of MR strips (rows), or groups of NR panels
// (columns) when there are too few strips for the team. The operand every unit needs (all of
// op(B)'s block when rows are split, all of op(A) when columns are split) is packed whole, for
// all K, by EACH thread into its own buffer, on the first unit that thread takes; each unit
// then runs its own K loop, packing only its own rows of A or panels of B.
//
// Why each thread packs its own copy: when the team packed one shared copy, half of it sat
// modified in the other core's L2 and every micro-kernel pass over it paid cross-core
// transfers. On the CaffeNet conv shapes (2 threads, Zen 5) the private copies run 1.16-1.32x
// faster (conv3 285 -> 331 GFLOP/s, conv4 234 -> 298, conv5 193 -> 273) although the packing
// work is duplicated; large problems (1024^3, fc at batch 64) are unchanged. A thread that the
// OS preempts holds back at most the unit it is on.
//
// If prepacked is given, op(A) was packed by PackedA with blocking KC = kc_packed and m_pad
// rows per KC block, and is read (shared, read-only) instead of packed.
void blocked(const Problem& p, const GemmConfig& cfg, int nt, const float* prepacked = nullptr,
             int64_t kc_packed = 0, int64_t m_pad = 0) {
  const int MR = cfg.mr, NR = cfg.nr;
  const int64_t MC = round_up(g_mc_override ? g_mc_override : cfg.mc, MR);
  const int64_t strips = ceil_div(p.M, MR);
  const int64_t a_rows = strips * MR;   // rows of a fully packed op(A)
  int64_t NC = round_up(g_nc_override ? g_nc_override : cfg.nc, NR);
  // Each thread packs the operand it needs whole, so split the side whose OTHER operand is the
  // smaller copy: rows when op(B) (K x N) is smaller than op(A) (M x K), i.e. M >= N, and
  // there are strips for two per thread; columns otherwise. Rows also when op(A) is too big
  // to pack whole. A prepacked op(A) is read, not copied.
  const bool split_m = (p.M >= std::min(NC, p.N) && strips >= 2 * nt) ||
                       (!prepacked && a_rows * p.K > kWholePackMax);
  if (split_m) {
    // All of op(B)'s block is packed at once: bound K x NC.
    NC = std::max<int64_t>(NR, std::min(NC, kWholePackMax / std::max<int64_t>(1, p.K) / NR * NR));
  }
  const int64_t nc_pad_max = round_up(std::min(NC, p.N), NR);
  // One work unit (a single MR strip when rows are split, one NR panel when columns are): the
  // team would fork for one thread's work (and, splitting columns, each thread pack all of A).
  // LeNet's ip2 (10 x 500, batch 32): 0.0116 -> 0.0095 ms on one thread.
  if (nt > 1 && (split_m ? strips : ceil_div(std::min(NC, p.N), NR)) < 2) nt = 1;
  // KC blocks of equal depth (block_kc); shallower where the strided-A kernel will read A in
  // place (the condition of the split_m loop below), whose B panel must stay in L1.
  const bool a_in_place = split_m && !prepacked && !p.ta && !p.akidx && cfg.ukernel_lda &&
                          ceil_div(std::min(NC, p.N), NR) <= 8;
  int64_t kc_limit = config_kc(cfg);
  if (a_in_place && cfg.kc_lda > 0 && g_kc_override == 0) kc_limit = std::min(kc_limit, cfg.kc_lda);
  const int64_t KC = prepacked ? kc_packed : block_kc(p.K, kc_limit);
  const int64_t kc_max = std::min(KC, p.K);
  // Work units: 16 per thread (dynamic balance when a thread is held up), at most MC rows of A
  // or a B block of 512 KiB (L2), a multiple of the team size, of equal size +-1 strip or
  // panel (so an undisturbed team splits the work as evenly as a static split would). With 4
  // a thread the last units left one thread idle for up to a quarter of its share (9% of
  // conv3's shape in libgomp's wait); 2 threads, 16 against 4 a thread, alternated: CaffeNet
  // conv1 / conv3 / conv4 shapes 1.07x / 1.01x / 1.04x, 1024^3 1.06x, CaffeNet at batch 32
  // 1.06x, at batch 1 1.01x, ResNet-18 and VGG-11 even (32 a thread: as 16).
  auto unit_count = [&](int64_t items, int64_t max_unit, int team) {
    int64_t u = std::min<int64_t>(items, 16 * team);
    u = std::max(u, ceil_div(items, max_unit));
    if (u > team) u = std::min(items, round_up(u, team));
    return std::max<int64_t>(u, 1);
  };
  const int64_t max_unit_strips = std::max<int64_t>(1, MC / MR);
  const int64_t max_unit_panels = std::max<int64_t>(1, (int64_t{1} << 17) / (kc_max * NR));
  const int64_t kblocks = ceil_div(p.K, KC);
  // Where the packer reads op(A) rows from i0 / op(B) columns from j0, K block from pc: with an
  // index the block's first k is in the index (pack.h), not in the pointer.
  auto a_src = [&p](int64_t i0, int64_t pc) {
    const int64_t k0 = p.akidx ? 0 : pc;
    return p.ta ? p.A + k0 * p.lda + i0 : p.A + i0 * p.lda + k0;
  };
  auto b_src = [&p](int64_t j0, int64_t pc) {
    const int64_t k0 = p.bkidx ? 0 : pc;
    return p.tb ? p.B + j0 * p.ldb + k0 : p.B + k0 * p.ldb + j0;
  };

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int team = omp_get_num_threads();
    // This thread's whole copy of the operand all units need, packed on its first unit.
    float* whole = split_m ? t_pack_b.get(p.K * nc_pad_max)
                           : (prepacked ? nullptr : t_pack_a.get(a_rows * p.K));
    const float* apacked = split_m ? prepacked : (prepacked ? prepacked : whole);
    const int64_t apad = prepacked ? m_pad : a_rows;   // rows of packed op(A) per KC block
    bool a_ready = prepacked != nullptr;
    for (int64_t jc = 0; jc < p.N; jc += NC) {
      const int64_t nc = std::min(NC, p.N - jc);
      const int64_t panels = ceil_div(nc, NR);
      const int64_t nc_pad = panels * NR;
      if (split_m) {
        // B block pc at whole + pc * nc_pad (kc x nc_pad: panel q at + q * NR * kc).
        bool b_ready = false;
        const int64_t units = unit_count(strips, max_unit_strips, team);
        float* abuf = prepacked ? nullptr : t_pack_a_private.get(ceil_div(strips, units) * MR * kc_max);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; ++u) {
          if (!b_ready) {
            for (int64_t b = 0; b < kblocks; ++b) {
              const int64_t pc = b * KC, kc = std::min(KC, p.K - pc);
              pack_b(p.tb, kc, nc, b_src(jc, pc), p.ldb, NR, 0, panels, whole + pc * nc_pad,
                     p.bkidx ? p.bkidx + pc : nullptr);
            }
            b_ready = true;
          }
          const int64_t i0 = strips * u / units * MR;
          const int64_t mrows = std::min(p.M, strips * (u + 1) / units * MR) - i0;
          for (int64_t pc = 0; pc < p.K; pc += KC) {
            const int64_t kc = std::min(KC, p.K - pc);
            const float* ablock;
            if (prepacked) {
              ablock = prepacked + pc * m_pad + i0 * kc;
            } else if (!p.ta && !p.akidx && panels <= 8 && cfg.ukernel_lda) {
              // Few panels (N <= 8 NR: fc at batch 64, conv3-5 at batch 1): each row of A is
              // used by few tiles, so the ISA's strided-A kernel reads a row-major A in place
              // instead of packing it (fc6's A comes from DRAM: the pack was a latency-bound
              // copy, 12-13% of its time; 1.10-1.13x faster on fc6/fc7 at batch 64, convs
              // unchanged; with many panels, as 1024^3, packing is faster).
              ablock = nullptr;
            } else {
              pack_a(p.ta, mrows, kc, a_src(i0, pc), p.lda, MR, abuf,
                     p.akidx ? p.akidx + pc : nullptr);
              ablock = abuf;
            }
            const float* bp = whole + pc * nc_pad;
            const float beta = pc == 0 ? p.beta : 1.0f;
            for (int64_t q = 0; q < panels; ++q) {
              const int64_t j = q * NR;
              const int n = static_cast<int>(std::min<int64_t>(NR, nc - j));
              for (int64_t ir = 0; ir < mrows; ir += MR) {
                const int m = static_cast<int>(std::min<int64_t>(MR, mrows - ir));
                float* ctile = p.C + (i0 + ir) * p.ldc + jc + j;
                if (ablock)
                  cfg.ukernel(kc, ablock + ir * kc, bp + j * kc, ctile, p.ldc, m, n, p.alpha, beta);
                else
                  cfg.ukernel_lda(kc, p.A + (i0 + ir) * p.lda + pc, p.lda, bp + j * kc, ctile,
                                  p.ldc, m, n, p.alpha, beta);
              }
            }
          }
        }
      } else {
        // op(A) block pc at whole + pc * a_rows (strip s at + s * MR * kc), as PackedA.
        const int64_t units = unit_count(panels, max_unit_panels, team);
        float* bbuf = t_pack_b_private.get(kc_max * ceil_div(panels, units) * NR);
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; ++u) {
          if (!a_ready) {
            for (int64_t b = 0; b < kblocks; ++b) {
              const int64_t pc = b * KC, kc = std::min(KC, p.K - pc);
              pack_a(p.ta, p.M, kc, a_src(0, pc), p.lda, MR, whole + pc * a_rows,
                     p.akidx ? p.akidx + pc : nullptr);
            }
            a_ready = true;
          }
          const int64_t q0 = panels * u / units, q1 = panels * (u + 1) / units;
          for (int64_t pc = 0; pc < p.K; pc += KC) {
            const int64_t kc = std::min(KC, p.K - pc);
            // Panels q0..q1 of this block, i.e. columns jc + q0 * NR on, land at bbuf.
            const int64_t j0 = jc + q0 * NR;
            const float* bsrc = b_src(j0, pc);
            // A row-major op(B) is read in place by the ISA's strided-B kernel when it has one:
            // each panel is used by every strip of this unit once, so packing it was a copy
            // for one pass (15-16% of the time of CaffeNet conv1/conv2's shapes on 2 threads;
            // reading in place runs them 1.05-1.17x faster, conv5's shape unchanged).
            const bool direct_b = !p.tb && !p.bkidx && cfg.ukernel_ldb;
            if (!direct_b)
              pack_b(p.tb, kc, nc - q0 * NR, bsrc, p.ldb, NR, 0, q1 - q0, bbuf,
                     p.bkidx ? p.bkidx + pc : nullptr);
            const float beta = pc == 0 ? p.beta : 1.0f;
            for (int64_t ic = 0; ic < p.M; ic += MC) {
              const int64_t mc = std::min(MC, p.M - ic);
              const float* ablock = apacked + pc * apad + ic * kc;
              for (int64_t q = q0; q < q1; ++q) {
                const int64_t j = q * NR;
                const int n = static_cast<int>(std::min<int64_t>(NR, nc - j));
                const float* bpanel = bbuf + (q - q0) * NR * kc;
                for (int64_t ir = 0; ir < mc; ir += MR) {
                  const int m = static_cast<int>(std::min<int64_t>(MR, mc - ir));
                  float* ctile = p.C + (ic + ir) * p.ldc + jc + j;
                  if (direct_b)
                    cfg.ukernel_ldb(kc, ablock + ir * kc, p.B + pc * p.ldb + jc + j, p.ldb, ctile,
                                    p.ldc, m, n, p.alpha, beta);
                  else
                    cfg.ukernel(kc, ablock + ir * kc, bpanel, ctile, p.ldc, m, n, p.alpha, beta);
                }
              }
            }
          }
        }
      }
    }
  }
}

// ---- GEMV: y = alpha * op(Mat) x + beta * y -------------------------------------------------
// "n" form: y[i] = sum_k Mat[i * ld + k] x[k], i < rows.   "t" form: y[j] = sum_k Mat[k * ld + j] x[k].
void gemv(const GemmConfig& cfg, bool t_form, int64_t rows, int64_t K, float alpha,
          const float* mat, int64_t ld, const float* x, int64_t incx, float beta, float* y,
          int64_t incy) {
  // memory-bound: worth threads from ~25 KFLOP
  const int nt = team_size(2.0 * static_cast<double>(rows) * K * 8);
  float* buf = t_vec.get(K + rows + 32);
  const float* xc = x;
  if (incx != 1) {
    for (int64_t k = 0; k < K; ++k) buf[k] = x[k * incx];
    xc = buf;
  }
  float* yc = y;
  const bool copy_y = t_form && incy != 1;
  if (copy_y) {
    yc = buf + round_up(K, 16);
    if (beta != 0.0f)
      for (int64_t j = 0; j < rows; ++j) yc[j] = y[j * incy];
  }
  // Chunks handed out dynamically: on a shared machine a preempted thread does not hold the
  // other one back (static halves would wait for the slower). 64 rows of the n form (4-row
  // blocks), 1024 columns of the t form (the AVX-512 kernel's y buffer width).
  const int64_t unit = t_form ? 1024 : 64;
  const int64_t chunks = ceil_div(rows, unit);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = c * unit, r1 = std::min(rows, r0 + unit);
    if (t_form)
      cfg.gemv_t(K, r1 - r0, alpha, mat + r0, ld, xc, beta, yc + r0);
    else
      cfg.gemv_n(r1 - r0, K, alpha, mat + r0 * ld, ld, xc, beta, y + r0 * incy, incy);
  }
  if (copy_y)
    for (int64_t j = 0; j < rows; ++j) y[j * incy] = yc[j];
}

}  // namespace

// C[m x n] = beta * C (beta == 0: zero, not read).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f)
      std::fill(c, c + N, 0.0f);
    else if (beta != 1.0f)
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

void check_packed_call(const char* who, int64_t M, int64_t N, int64_t K, bool trans_b,
                       int64_t ldb, int64_t ldc) {
  if (N >= 0 && ldb >= std::max<int64_t>(1, trans_b ? K : N) && ldc >= std::max<int64_t>(1, N))
    return;   // the message only on failure: these calls are per layer and per forward
  check(false, std::string(who) + ": bad N/ldb/ldc (M=" + std::to_string(M) + " N=" +
                   std::to_string(N) + " K=" + std::to_string(K) + " ldb=" + std::to_string(ldb) +
                   " ldc=" + std::to_string(ldc) + ")");
}

void set_blocking_override(int64_t kc, int64_t mc, int64_t nc) {
  g_kc_override = kc;
  g_mc_override = mc;
  g_nc_override = nc;
}

}  // namespace gemm

namespace {

// Argument checks shared by sgemm and sgemm_gather; a gathered operand's leading dimension is
// that of its stored (wider) matrix, checked against the index instead of K.
void check_sgemm(const char* who, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 int64_t lda, const int64_t* akidx, int64_t ldb, const int64_t* bkidx,
                 int64_t ldc) {
  check(M >= 0 && N >= 0 && K >= 0,
        std::string(who) + ": negative size M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K));
  check(lda >= std::max<int64_t>(1, trans_a ? M : (akidx ? 1 : K)) &&
            ldb >= std::max<int64_t>(1, trans_b ? (bkidx ? 1 : K) : N) &&
            ldc >= std::max<int64_t>(1, N),
        std::string(who) + ": leading dimension too small (M=" + std::to_string(M) + " N=" +
            std::to_string(N) + " K=" + std::to_string(K) + " lda=" + std::to_string(lda) +
            " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc) + ")");
  // Where the stored matrix's extent along K is its leading dimension, the index must stay in it.
  auto check_index = [&](const int64_t* idx, int64_t extent, const char* which) {
    if (!idx) return;
    for (int64_t k = 0; k < K; ++k)
      if (idx[k] < 0 || (extent > 0 && idx[k] >= extent))
        check(false, std::string(who) + ": " + which + " index " + std::to_string(idx[k]) +
                         " at k=" + std::to_string(k) + " outside the stored matrix");
  };
  check_index(akidx, trans_a ? 0 : lda, "A");
  check_index(bkidx, trans_b ? ldb : 0, "B");
}

void run_sgemm(const gemm::Problem& p) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.0f) {
    gemm::scale_c(p.M, p.N, p.beta, p.C, p.ldc);
    return;
  }
  const gemm::GemmConfig& cfg = gemm::gemm_config(active_isa());
  if ((p.N == 1 || p.M == 1) && (p.akidx || p.bkidx)) {
    // The GEMV kernels read their vector and matrix in place: gather the indexed operands
    // (a vector of K, or a matrix the GEMV streams once anyway) and run the plain path.
    gemm::Problem q = p;
    if (p.akidx) {
      float* ga = gemm::t_gather_a.get(p.M * p.K);
      for (int64_t i = 0; i < p.M; ++i)
        for (int64_t k = 0; k < p.K; ++k)
          ga[i * p.K + k] = p.ta ? p.A[p.akidx[k] * p.lda + i] : p.A[i * p.lda + p.akidx[k]];
      q.A = ga;
      q.lda = p.K;
      q.ta = false;
      q.akidx = nullptr;
    }
    if (p.bkidx) {
      float* gb = gemm::t_gather_b.get(p.K * p.N);
      for (int64_t k = 0; k < p.K; ++k)
        for (int64_t j = 0; j < p.N; ++j)
          gb[k * p.N + j] = p.tb ? p.B[j * p.ldb + p.bkidx[k]] : p.B[p.bkidx[k] * p.ldb + j];
      q.B = gb;
      q.ldb = p.N;
      q.tb = false;
      q.bkidx = nullptr;
    }
    return run_sgemm(q);
  }
  if (p.N == 1) {
    // C[:, 0] = op(A) op(B)[:, 0]. op(A) rows are A's rows (n form) or A's columns (t form).
    const int64_t incx = p.tb ? 1 : p.ldb;
    gemm::gemv(cfg, p.ta, p.M, p.K, p.alpha, p.A, p.lda, p.B, incx, p.beta, p.C, p.ldc);
    return;
  }
  if (p.M == 1) {
    // C[0, :]^T = op(B)^T op(A)[0, :]^T.
    const int64_t incx = p.ta ? p.lda : 1;
    gemm::gemv(cfg, !p.tb, p.N, p.K, p.alpha, p.B, p.ldb, p.A, incx, p.beta, p.C, 1);
    return;
  }
  gemm::blocked(p, cfg, gemm::team_size(2.0 * static_cast<double>(p.M) * p.N * p.K));
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  check_sgemm("sgemm", trans_a, trans_b, M, N, K, lda, nullptr, ldb, nullptr, ldc);
  run_sgemm(gemm::Problem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc});
}

void sgemm_gather(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const int64_t* akidx, const float* B, int64_t ldb,
                  const int64_t* bkidx, float beta, float* C, int64_t ldc) {
  check_sgemm("sgemm_gather", trans_a, trans_b, M, N, K, lda, akidx, ldb, bkidx, ldc);
  gemm::Problem p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  p.akidx = akidx;
  p.bkidx = bkidx;
  run_sgemm(p);
}

PackedA::PackedA(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda) {
  check(M > 0 && K > 0, "PackedA: empty matrix M=" + std::to_string(M) + " K=" + std::to_string(K));
  check(lda >= (trans_a ? M : K), "PackedA: lda=" + std::to_string(lda) + " too small");
  isa_ = active_isa();
  const gemm::GemmConfig& cfg = gemm::gemm_config(isa_);
  m_ = M;
  k_ = K;
  kc_ = gemm::block_kc(K, gemm::config_kc(cfg));
  m_pad_ = gemm::round_up(M, cfg.mr);
  data_ = std::shared_ptr<float>(aligned_alloc_floats(m_pad_ * K), aligned_free);
  float* dst = data_.get();
  const int64_t nblocks = gemm::ceil_div(K, kc_);
  // Each (KC block, MR strip range) is independent: pack them in parallel.
  const int nt = gemm::team_size(2.0 * static_cast<double>(M) * 16 * K);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t pc = b * kc_;
    const int64_t kc = std::min(kc_, K - pc);
    const float* src = trans_a ? A + pc * lda : A + pc;
    gemm::pack_a(trans_a, M, kc, src, lda, cfg.mr, dst + pc * m_pad_);
  }
}

void sgemm_packed(const PackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                  int64_t ldb, float beta, float* C, int64_t ldc) {
  check(!a.empty(), "sgemm_packed: empty PackedA");
  const int64_t M = a.rows(), K = a.depth();
  gemm::check_packed_call("sgemm_packed", M, N, K, trans_b, ldb, ldc);
  if (N == 0) return;
  if (alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm::Problem p{false, trans_b, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc};
  gemm::blocked(p, gemm::gemm_config(a.isa()), gemm::team_size(2.0 * static_cast<double>(M) * N * K),
                a.data(), a.kc(), a.m_pad());
}

void sgemm_packed_gather(const PackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                         int64_t ldb, const int64_t* bkidx, float beta, float* C, int64_t ldc) {
  if (!bkidx) return sgemm_packed(a, trans_b, N, alpha, B, ldb, beta, C, ldc);
  check(!a.empty(), "sgemm_packed_gather: empty PackedA");
  const int64_t M = a.rows(), K = a.depth();
  check_sgemm("sgemm_packed_gather", false, trans_b, M, N, K, K, nullptr, ldb, bkidx, ldc);
  if (N == 0) return;
  if (alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm::Problem p{false, trans_b, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc};
  p.bkidx = bkidx;
  gemm::blocked(p, gemm::gemm_config(a.isa()), gemm::team_size(2.0 * static_cast<double>(M) * N * K),
                a.data(), a.kc(), a.m_pad());
}

}  // namespace deftnn
