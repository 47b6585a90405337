// deftnn fp32 GEMM: the BLIS five loops around a per-ISA micro-kernel, OpenMP threading, and
// the memory-bound GEMV path for N == 1 / M == 1. Kernels and block sizes come from config.cpp.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/tensor.h"
#include "gemm/pack.h"
#include "gemm/ukernel.h"

namespace deftnn {
namespace gemm {
namespace {

int64_t g_kc_override = 0, g_mc_override = 0, g_nc_override = 0;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// A grow-only, 64-byte aligned buffer. One per thread (thread_local) for packed A and for
// packed B, so buffers are allocated on the first call and reused by every later one.
struct Buffer {
  float* p = nullptr;
  int64_t cap = 0;
  ~Buffer() { aligned_free(p); }
  float* get(int64_t n) {
    if (n > cap) {
      aligned_free(p);
      p = aligned_alloc_floats(n);
      cap = n;
    }
    return p;
  }
};
thread_local Buffer t_pack_a;
thread_local Buffer t_pack_b;   // owned by the calling thread, shared by its team
thread_local Buffer t_pack_b_private;   // a thread's own B panels (team split over N only)
thread_local Buffer t_vec;      // GEMV: contiguous x / y copies

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

// Threads for a problem of this many flops: below ~1 MFLOP the fork/barriers cost more.
int team_size(int64_t M, int64_t N, int64_t K) {
  if (omp_in_parallel()) return 1;
  const int nt = omp_get_max_threads();
  const double flops = 2.0 * static_cast<double>(M) * N * K;
  if (flops < 2.0e5) return 1;
  return std::max(1, nt);
}

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
};

// Splits nt threads into a tm x tn grid over (MR strips, NR panels) of an nc-wide block:
// minimises the largest per-thread tile count; prefers splitting M (B panel shared, A not
// packed twice).
void thread_grid(int nt, int64_t strips, int64_t panels, int* tm, int* tn) {
  int64_t best = -1;
  for (int m = nt; m >= 1; --m) {
    if (nt % m) continue;
    const int n = nt / m;
    const int64_t cost = ceil_div(strips, m) * ceil_div(panels, n) * 16 + (n - 1);
    if (best < 0 || cost < best) {
      best = cost;
      *tm = m;
      *tn = n;
    }
  }
}

int64_t config_kc(const GemmConfig& cfg) { return g_kc_override ? g_kc_override : cfg.kc; }

// The five loops. If prepacked is given, op(A) was packed by PackedA with blocking KC = kc_packed
// and m_pad rows per KC block, and the ic loop reads it instead of packing.
void blocked(const Problem& p, const GemmConfig& cfg, int nt, const float* prepacked = nullptr,
             int64_t kc_packed = 0, int64_t m_pad = 0) {
  const int MR = cfg.mr, NR = cfg.nr;
  const int64_t KC = prepacked ? kc_packed : config_kc(cfg);
  const int64_t MC = round_up(g_mc_override ? g_mc_override : cfg.mc, MR);
  const int64_t NC = round_up(g_nc_override ? g_nc_override : cfg.nc, NR);
  const int64_t kc_max = std::min(KC, p.K);
  const int64_t nc_pad = round_up(std::min(NC, p.N), NR);
  // Two B panels: the team packs panel (pc & 1) while slower threads may still read the other,
  // so one barrier per KC block suffices.
  const int64_t b_size = kc_max * nc_pad;
  float* bbuf = t_pack_b.get(2 * b_size);
  const int64_t a_size = std::min(MC, round_up(p.M, MR)) * kc_max;

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();
    float* abuf = prepacked ? nullptr : t_pack_a.get(a_size);
    float* bpriv = nt > 1 ? t_pack_b_private.get(b_size) : nullptr;
    int64_t iter = 0;
    for (int64_t jc = 0; jc < p.N; jc += NC) {
      const int64_t nc = std::min(NC, p.N - jc);
      const int64_t panels = ceil_div(nc, NR);
      const int64_t strips = ceil_div(p.M, MR);
      int tm = 1, tn = 1;
      thread_grid(team, strips, panels, &tm, &tn);
      const int ti = tid % tm, tj = tid / tm;
      const int64_t s0 = strips * ti / tm, s1 = strips * (ti + 1) / tm;
      const int64_t q0 = panels * tj / tn, q1 = panels * (tj + 1) / tn;
      const int64_t m0 = s0 * MR, m1 = std::min(p.M, s1 * MR);
      // When the team splits only N, no two threads use the same B panel: each packs its own,
      // privately, and the KC loop needs no barrier. When it splits M, the team shares one B
      // panel (packed cooperatively, one barrier per KC block) rather than packing it twice.
      const bool private_b = team > 1 && tm == 1;
      for (int64_t pc = 0; pc < p.K; pc += KC, ++iter) {
        const int64_t kc = std::min(KC, p.K - pc);
        float* bp;
        const float* bsrc = p.tb ? p.B + jc * p.ldb + pc : p.B + pc * p.ldb + jc;
        if (private_b) {
          bp = bpriv;
          pack_b(p.tb, kc, nc, bsrc, p.ldb, NR, q0, q1, bp);
        } else {
          // Pack op(B)[pc:pc+kc, jc:jc+nc], panels split between the team.
          bp = bbuf + (iter & 1) * b_size;
          const int64_t b0 = panels * tid / team, b1 = panels * (tid + 1) / team;
          pack_b(p.tb, kc, nc, bsrc, p.ldb, NR, b0, b1, bp);
          if (team > 1) {
#pragma omp barrier
          }
        }
        const float beta = pc == 0 ? p.beta : 1.0f;
        for (int64_t ic = m0; ic < m1; ic += MC) {
          const int64_t mc = std::min(MC, m1 - ic);
          const float* ablock;
          if (prepacked) {
            ablock = prepacked + pc * m_pad + ic * kc;   // ic is a multiple of MR
          } else {
            const float* asrc = p.ta ? p.A + pc * p.lda + ic : p.A + ic * p.lda + pc;
            pack_a(p.ta, mc, kc, asrc, p.lda, MR, abuf);
            ablock = abuf;
          }
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j = q * NR;
            const int n = static_cast<int>(std::min<int64_t>(NR, nc - j));
            const float* bpanel = bp + j * kc;
            for (int64_t ir = 0; ir < mc; ir += MR) {
              const int m = static_cast<int>(std::min<int64_t>(MR, mc - ir));
              cfg.ukernel(kc, ablock + ir * kc, bpanel, p.C + (ic + ir) * p.ldc + jc + j, p.ldc, m,
                          n, p.alpha, beta);
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
  const int nt = team_size(rows, 1, K * 8);   // memory-bound: worth threads from ~25 KFLOP
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

void set_blocking_override(int64_t kc, int64_t mc, int64_t nc) {
  g_kc_override = kc;
  g_mc_override = mc;
  g_nc_override = nc;
}

}  // namespace gemm

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  check(M >= 0 && N >= 0 && K >= 0,
        "sgemm: negative size M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K));
  check(lda >= std::max<int64_t>(1, trans_a ? M : K) && ldb >= std::max<int64_t>(1, trans_b ? K : N) &&
            ldc >= std::max<int64_t>(1, N),
        "sgemm: leading dimension too small (M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K) + " lda=" + std::to_string(lda) + " ldb=" +
            std::to_string(ldb) + " ldc=" + std::to_string(ldc) + ")");
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    return;
  }
  const gemm::GemmConfig& cfg = gemm::gemm_config(active_isa());
  if (N == 1) {
    // C[:, 0] = op(A) op(B)[:, 0]. op(A) rows are A's rows (n form) or A's columns (t form).
    const float* x = B;
    const int64_t incx = trans_b ? 1 : ldb;
    gemm::gemv(cfg, trans_a, M, K, alpha, A, lda, x, incx, beta, C, ldc);
    return;
  }
  if (M == 1) {
    // C[0, :]^T = op(B)^T op(A)[0, :]^T.
    const float* x = A;
    const int64_t incx = trans_a ? lda : 1;
    gemm::gemv(cfg, !trans_b, N, K, alpha, B, ldb, x, incx, beta, C, 1);
    return;
  }
  gemm::Problem p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  gemm::blocked(p, cfg, gemm::team_size(M, N, K));
}

PackedA::PackedA(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda) {
  check(M > 0 && K > 0, "PackedA: empty matrix M=" + std::to_string(M) + " K=" + std::to_string(K));
  check(lda >= (trans_a ? M : K), "PackedA: lda=" + std::to_string(lda) + " too small");
  isa_ = active_isa();
  const gemm::GemmConfig& cfg = gemm::gemm_config(isa_);
  m_ = M;
  k_ = K;
  kc_ = gemm::config_kc(cfg);
  m_pad_ = gemm::round_up(M, cfg.mr);
  data_ = std::shared_ptr<float>(aligned_alloc_floats(m_pad_ * K), aligned_free);
  float* dst = data_.get();
  const int64_t nblocks = gemm::ceil_div(K, kc_);
  // Each (KC block, MR strip range) is independent: pack them in parallel.
  const int nt = gemm::team_size(M, 16, K);
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
  check(N >= 0 && ldb >= std::max<int64_t>(1, trans_b ? K : N) && ldc >= std::max<int64_t>(1, N),
        "sgemm_packed: bad N/ldb/ldc (M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K) + " ldb=" + std::to_string(ldb) + " ldc=" +
            std::to_string(ldc) + ")");
  if (N == 0) return;
  if (alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm::Problem p{false, trans_b, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc};
  gemm::blocked(p, gemm::gemm_config(a.isa()), gemm::team_size(M, N, K), a.data(), a.kc(),
                a.m_pad());
}

}  // namespace deftnn
