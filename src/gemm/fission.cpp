// deftnn fission GEMM driver: packs weights once into reduced-format strips (FissionPackedA),
// packs activations per call into exact-width B panels, and runs the per-ISA tile kernels
// (fission_kernels_<isa>.cpp) over (strip, panel) items with OpenMP. Layouts and the choice of
// tile orientation: include/deftnn/fission.h; kernel contract: src/gemm/fission.h.
#include "deftnn/fission.h"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "deftnn/error.h"
#include "deftnn/tensor.h"
#include "gemm/fission.h"
#include "gemm/pack.h"
#include "gemm/ukernel.h"

namespace deftnn {
namespace gemm {
bool g_gemv_prefetch = true;   // set_fission_gemv_prefetch (declared in gemm/fission.h)
bool g_side_prefetch = true;
bool g_share_tails = true;
std::atomic<int64_t> g_shared_tiles{0};
int g_share_tails_stall_us = 0;

namespace {

// The one place the fission kernels of each ISA are registered: strip height MR, panel width
// NR, and the tile kernel.
struct FissionConfig {
  const char* name;
  int mr, nr;
  FissionTile tile;
  bool widens;   // false: the kernel only reads fp32 strips (the driver decodes)
  FissionTile tile_d8s;   // Deft-8 on a prescaled B panel (src/gemm/fission.h); null: none
  FissionTileRows tile_rows = nullptr;   // tile with the conv output pass in its store; null:
                                         // tile, then apply_tile_rows
  FissionTileDirect direct = nullptr;    // fission_conv's tile reading B from the image; null:
                                         // B panels are packed
};
const FissionConfig& fission_config(Isa isa) {
  static const FissionConfig kPortable{"fission_tile_8x4__portable", 8, 4,
                                       fission_tile__portable, false, nullptr};
  static const FissionConfig kAvx2{"fission_tile_16x6__avx2", 16, 6, fission_tile__avx2, true,
                                   fission_tile_d8s__avx2};
  static const FissionConfig kAvx512{"fission_tile_32x12__avx512", 32, 12, fission_tile__avx512,
                                     true, fission_tile_d8s__avx512, fission_tile_rows__avx512,
                                     fission_tile_direct__avx512};
  static const FissionConfig kAvx512Bf16{"fission_tile_32x12__avx512bf16", 32, 12,
                                         fission_tile__avx512bf16, true, fission_tile_d8s__avx512,
                                         fission_tile_rows__avx512bf16,
                                         fission_tile_direct__avx512};
  switch (isa) {
    case Isa::portable: return kPortable;
    case Isa::avx2: return kAvx2;
    case Isa::avx512: return kAvx512;
    case Isa::avx512_bf16: return kAvx512Bf16;
  }
  return kPortable;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Grow-only 64-byte aligned byte buffer, one per thread per use.
struct ByteBuf {
  float* p = nullptr;
  int64_t cap = 0;   // floats
  ~ByteBuf() { aligned_free(p); }
  void* get(int64_t bytes) {
    const int64_t n = (bytes + 3) / 4 + 16;
    if (n > cap) {
      aligned_free(p);
      p = aligned_alloc_floats(n);
      cap = n;
    }
    return p;
  }
};
thread_local ByteBuf t_bpack;    // B panels (the calling thread's, shared by its team; or a thread's own)
thread_local ByteBuf t_strip;    // decoded fp32 strip(s) (portable / off-chip)
thread_local ByteBuf t_bpriv;    // a thread's own B panel (panel-major order)
thread_local ByteBuf t_tmp;      // scratch (packing)
thread_local ByteBuf t_image;    // fission_conv's padded, phased images (calling thread's)
thread_local ByteBuf t_rowoff;   // fission_conv's row offsets (calling thread's)
thread_local ByteBuf t_chunks;   // fission_conv's direct column chunks (calling thread's)
thread_local ByteBuf t_cout;     // fission_conv's side-by-side C where images are written apart

bool g_conv_panels = false;      // set_fission_conv_panels

// Decodes strip s of a into fp32, element (i, k) at out[k * MR + i] (natural rows).
void decode_strip(const FissionPackedA& a, int64_t s, float* out) {
  const int MR = a.mr();
  const int64_t K = a.depth();
  const uint8_t* src = a.strip(s);
  if (a.native_bf16() && is_deft8(a.format())) {
    std::vector<float> v(static_cast<size_t>(MR) * 2 * ((K + 1) / 2));
    decode(a.format(), src, v.data(), static_cast<int64_t>(v.size()));
    for (int64_t k = 0; k < K; ++k)
      for (int i = 0; i < MR; ++i)
        out[k * MR + i] = v[static_cast<size_t>((k / 2) * MR * 2 + d8pair_byte(i, k & 1))];
    return;
  }
  if (a.native_bf16()) {
    const uint16_t* c = reinterpret_cast<const uint16_t*>(src);
    for (int64_t k = 0; k < K; ++k) {
      const uint16_t* ck = c + (k / 2) * MR * 2 + (k & 1);
      float* o = out + k * MR;
      for (int i = 0; i < MR; ++i) {
        const uint32_t bits = static_cast<uint32_t>(ck[2 * i]) << 16;
        std::memcpy(o + i, &bits, 4);
      }
    }
    return;
  }
  // bf16 codes in the deft16 layout widen by shift, exactly as the kernels do.
  const Format f = a.format() == Format::bf16 ? Format::deft16 : a.format();
  decode(f, src, out, static_cast<int64_t>(MR) * K);
}

}  // namespace
}  // namespace gemm

void set_fission_conv_panels(bool force) { gemm::g_conv_panels = force; }
void set_fission_gemv_prefetch(bool on) { gemm::g_gemv_prefetch = on; }

bool fission_supports(Format f) {
  switch (f) {
    case Format::f32: case Format::half: case Format::deft16: case Format::deft16q:
    case Format::bf16: return true;
    default: return is_deft8(f);
  }
}

FissionPackedA::FissionPackedA(Format format, Rounding rounding, bool trans_a, int64_t M,
                               int64_t K, const float* A, int64_t lda, uint64_t seed,
                               FissionMode mode) {
  check(M > 0 && K > 0,
        "FissionPackedA: empty matrix M=" + std::to_string(M) + " K=" + std::to_string(K));
  check(lda >= (trans_a ? M : K), "FissionPackedA: lda=" + std::to_string(lda) + " too small");
  check(fission_supports(format),
        std::string("FissionPackedA: format ") + format_name(format) + " has no fission kernel");
  format_ = format;
  rounding_ = rounding;
  isa_ = active_isa();
  const gemm::FissionConfig& cfg = gemm::fission_config(isa_);
  m_ = M;
  k_ = K;
  mr_ = cfg.mr;
  // Deft-8 pairs: bf16_dot where its kernel runs (MR = 32 on avx512_bf16, VBMI).
  const bool d8pairs = mode == FissionMode::bf16_dot && is_deft8(format) &&
                       isa_ == Isa::avx512_bf16 && cpu_has_avx512vbmi();
  pairs_ = (format == Format::bf16 && isa_ == Isa::avx512_bf16) || d8pairs;
  strips_ = gemm::ceil_div(M, mr_);
  const int64_t kslots = pairs_ ? gemm::round_up(K, 2) : K;
  const int64_t elems = static_cast<int64_t>(mr_) * kslots;
  strip_bytes_ = gemm::round_up(encoded_bytes(format, elems), 64);
  const int64_t total = strips_ * strip_bytes_;
  data_ = std::shared_ptr<uint8_t>(
      reinterpret_cast<uint8_t*>(aligned_alloc_floats(total / 4)), aligned_free);
  uint8_t* base = data_.get();
  const int MR = mr_;
  const bool pairs = pairs_;
  const int nt = gemm::team_size(2.0 * M * K * 8);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float* tmp = static_cast<float*>(gemm::t_tmp.get(elems * 4));
#pragma omp for schedule(static)
    for (int64_t s = 0; s < strips_; ++s) {
      for (int64_t k = 0; k < kslots; ++k)
        for (int i = 0; i < MR; ++i) {
          const int64_t row = s * MR + i;
          const float v = row < M && k < K ? (trans_a ? A[k * lda + row] : A[row * lda + k]) : 0.0f;
          const int64_t pos = d8pairs ? (k / 2) * MR * 2 + gemm::d8pair_byte(i, k & 1)
                              : pairs ? ((k / 2) * MR + i) * 2 + (k & 1)
                                      : k * MR + i;
          tmp[pos] = v;
        }
      // Stochastic draws indexed by the position in the whole packed array.
      encode(format, rounding, tmp, base + s * strip_bytes_, elems,
             seed + static_cast<uint64_t>(s * elems));
      const int64_t used = encoded_bytes(format, elems);
      std::memset(base + s * strip_bytes_ + used, 0, strip_bytes_ - used);
    }
  }
}

FissionPackedA FissionPackedA::conv_channel_pairs(Format format, Rounding rounding, int64_t M,
                                                  int64_t C, int64_t taps, const float* W,
                                                  uint64_t seed, FissionMode mode) {
  check(M > 0 && C > 0 && taps > 0, "FissionPackedA::conv_channel_pairs: empty M=" +
                                        std::to_string(M) + " C=" + std::to_string(C) +
                                        " taps=" + std::to_string(taps));
  if (!(format == Format::bf16 && active_isa() == Isa::avx512_bf16))
    return FissionPackedA(format, rounding, false, M, C * taps, W, C * taps, seed, mode);
  const int64_t cp = (C + 1) / 2, K = C * taps, Kp = 2 * cp * taps;
  std::vector<float> w(static_cast<size_t>(M * Kp), 0.0f);
  for (int64_t o = 0; o < M; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < taps; ++t)
        w[static_cast<size_t>(o * Kp + ((c / 2) * taps + t) * 2 + c % 2)] = W[o * K + c * taps + t];
  FissionPackedA p(format, rounding, false, M, Kp, w.data(), Kp, seed);
  p.pair_taps_ = taps;
  p.pair_c_ = C;
  return p;
}

FissionPackedA FissionPackedA::conv_tap_pairs(Format format, Rounding rounding, int64_t M,
                                              int64_t C, int64_t kh, int64_t kw, const float* W,
                                              uint64_t seed, FissionMode mode) {
  check(M > 0 && C > 0 && kh > 0 && kw > 0, "FissionPackedA::conv_tap_pairs: empty M=" +
                                                std::to_string(M) + " C=" + std::to_string(C) +
                                                " kernel " + std::to_string(kh) + "x" +
                                                std::to_string(kw));
  const int64_t taps = kh * kw, K = C * taps;
  if (!(format == Format::bf16 && active_isa() == Isa::avx512_bf16))
    return FissionPackedA(format, rounding, false, M, K, W, K, seed, mode);
  const int64_t kwp = (kw + 1) / 2, Kp = 2 * C * kh * kwp;
  std::vector<float> w(static_cast<size_t>(M * Kp), 0.0f);
  for (int64_t o = 0; o < M; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j)
          w[static_cast<size_t>(o * Kp + ((c * kh + i) * kwp + j / 2) * 2 + j % 2)] =
              W[o * K + c * taps + i * kw + j];
  FissionPackedA p(format, rounding, false, M, Kp, w.data(), Kp, seed);
  p.pair_taps_ = taps;
  p.pair_c_ = C;
  p.pair_kw_ = kw;
  return p;
}

std::vector<float> FissionPackedA::widened() const {
  check(!empty(), "FissionPackedA::widened: empty");
  std::vector<float> out(m_ * k_);
  std::vector<float> strip(static_cast<size_t>(mr_) * k_);
  for (int64_t s = 0; s < strips_; ++s) {
    gemm::decode_strip(*this, s, strip.data());
    for (int i = 0; i < mr_ && s * mr_ + i < m_; ++i)
      for (int64_t k = 0; k < k_; ++k) out[(s * mr_ + i) * k_ + k] = strip[k * mr_ + i];
  }
  return out;
}

const char* fission_kernel_name(const FissionPackedA& a, FissionMode mode) {
  const gemm::FissionConfig& cfg = gemm::fission_config(a.isa());
  if (mode == FissionMode::offchip) return "offchip_decode+fission_tile_f32";
  if (a.native_bf16() && is_deft8(a.format())) return "fission_tile_d8dot_32x12__avx512bf16";
  return cfg.name;
}

namespace gemm {
namespace {

// The B-panel builder of fission_conv for an ISA: native bf16 pairs or fp32.
PanelBuild panel_builder(Isa isa, bool native) {
  if (native) return panel_pairs__avx512bf16;
  switch (isa) {
    case Isa::avx512: case Isa::avx512_bf16: return panel_f32__avx512;
    case Isa::avx2: return panel_f32__avx2;
    default: return panel_f32__portable;
  }
}

// Deft-8 in registers without the per-weight multiply (src/gemm/fission.h): the factor
// 2^(127 - bias) B must be prescaled by, or 0 when B runs as is - not Deft-8, off-chip, an ISA
// whose kernel does not widen, or some |b| >= Deft8Widen::limit (or inf, NaN) among the rows x
// cols values of B (rows ld floats apart). One pass over B per call, a small fraction of the GEMM.
float deft8_prescale(const FissionPackedA& a, FissionMode mode, const float* b, int64_t rows,
                     int64_t cols, int64_t ld) {
  const FissionConfig& cfg = fission_config(a.isa());
  if (!is_deft8(a.format()) || mode != FissionMode::fission || !cfg.widens || !cfg.tile_d8s)
    return 0.0f;
  const Deft8Widen d = deft8_widen(a.format());
  uint32_t lb;
  std::memcpy(&lb, &d.limit, 4);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = b + r * ld;
    // The sign bit of (|b| bits - limit bits) ANDed over the row: set iff every |b| < limit
    // (NaN and inf bits are above every finite limit). Branch-free, so it vectorises.
    int32_t acc = -1;
    for (int64_t c = 0; c < cols; ++c) {
      uint32_t u;
      std::memcpy(&u, p + c, 4);
      acc &= static_cast<int32_t>(u & 0x7FFFFFFFu) - static_cast<int32_t>(lb);
    }
    if (acc >= 0) return 0.0f;
  }
  return d.scale;
}

// The fission GEMM driver over any B source. prep(): run by every thread of the team before any
// panel is packed, ending in a barrier (the source's own set-up; may be empty); pack(j0, nq,
// native, dst): writes the panel of columns [j0, j0 + nq) as native K-pair words (native) or
// fp32 [k * nq + j]. b_prescaled: the fp32 panels pack() writes are B * 2^(127 - bias) of the
// Deft-8 format of a (see deft8_prescale), run by the kernel without the per-weight multiply.
// prep(): the team's B preparation with a barrier (fission_conv's image copy split by channel);
// prep_cols(c0, c1): the preparation of what columns [c0, c1) mostly read, no barrier (the
// copy of the image rows of those output columns), used where each thread takes a contiguous
// range of panels.
template <class Prep, class PrepCols, class Pack>
void drive(const FissionPackedA& a, int64_t N, float alpha, float beta, float* C, int64_t ldc,
           FissionMode mode, bool b_prescaled, Prep&& prep, PrepCols&& prep_cols, Pack&& pack,
           const TileEpilogue* epi = nullptr) {
  const int64_t M = a.rows(), K = a.depth();
  const FissionConfig& cfg = fission_config(a.isa());
  const int MR = cfg.mr, NR = cfg.nr;
  // Strips decoded to fp32 before the kernel: the off-chip baseline, or a kernel that cannot widen.
  const bool offchip = mode == FissionMode::offchip || !cfg.widens;
  const bool native = a.native_bf16() && !offchip;
  // The kernel sees: f32 strips when the driver decodes, else the packed format.
  const Format kf = offchip ? Format::f32 : a.format();
  // bf16 without the native instruction (and not off-chip): B is rounded to bf16 like vdpbf16ps.
  // (On the portable path too: fission semantics do not depend on where the widening happens.)
  // Deft-8 in bf16_dot mode without its native kernel: the same, so every path computes the
  // same products.
  const bool round_b = (a.format() == Format::bf16 || (mode == FissionMode::bf16_dot &&
                                                       is_deft8(a.format()))) &&
                       !native && mode != FissionMode::offchip;
  const int64_t S = a.strips(), P = ceil_div(N, NR);
  const int64_t KP = (K + 1) / 2;
  // Panel q (width nq = min(NR, N - q * NR)) starts at q * NR * slot bytes.
  const int64_t panel_stride = native ? NR * KP * 4 : NR * K * 4;
  const int nt = team_size(2.0 * M * N * K);
  auto pack_panel = [&](int64_t q, uint8_t* dst) {
    const int64_t j0 = q * NR, nq = std::min<int64_t>(NR, N - j0);
    pack(j0, nq, native, dst);
    if (round_b) {
      float* df = reinterpret_cast<float*>(dst);
      uint16_t* tmp = static_cast<uint16_t*>(t_tmp.get(K * nq * 2));
      encode(Format::bf16, Rounding::nearest_even, df, tmp, K * nq);
      decode(Format::bf16, tmp, df, K * nq);
    }
  };
  // Deft-8 on panels the caller prescaled (b_prescaled): the kernel without the multiply.
  // Deft-8 in K pairs (bf16_dot): its own tile, through the rows form.
  const bool d8dot = native && is_deft8(a.format());
  const FissionTileRows tile_rows =
      d8dot ? fission_tile_d8dot__avx512bf16 : b_prescaled ? nullptr : cfg.tile_rows;
  auto tile = [&](Format f, int64_t k, const void* as, const void* bp, float* c, int64_t ldc_,
                  int m, int n, float al, float be) {
    if (d8dot)
      fission_tile_d8dot__avx512bf16(f, k, as, bp, c, ldc_, m, n, al, be, nullptr);
    else
      (b_prescaled ? cfg.tile_d8s : cfg.tile)(f, k, as, bp, c, ldc_, m, n, al, be);
  };
  auto run_tile = [&](int64_t s, int64_t q, const void* astrip, const uint8_t* bpanel) {
    const int64_t j0 = q * NR;
    const int n = static_cast<int>(std::min<int64_t>(NR, N - j0));
    const int m = static_cast<int>(std::min<int64_t>(MR, M - s * MR));
    float* c = C + s * MR * ldc + j0;
    if (epi && !epi->fn) {
      // The conv output pass in the kernel's store (TileEpilogue's bias / res / relu form).
      const TileRows rows{epi->bias ? epi->bias + s * MR : nullptr,
                          epi->res ? epi->res + s * MR * epi->ldr + j0 : nullptr, epi->ldr,
                          epi->relu};
      if (tile_rows) {
        tile_rows(kf, K, astrip, bpanel, c, ldc, m, n, alpha, beta, &rows);
      } else {
        tile(kf, K, astrip, bpanel, c, ldc, m, n, alpha, beta);
        apply_tile_rows(rows, c, ldc, m, n);
      }
      return;
    }
    tile(kf, K, astrip, bpanel, c, ldc, m, n, alpha, beta);
    if (epi) epi->fn(epi->ctx, s * MR, j0, m, n, c, ldc);
  };
  const bool decode_a = offchip && a.format() != Format::f32;
  const int64_t strip_floats = int64_t{MR} * K;

  // Loop order. When all of A (as the kernel reads it) fits in L2 and there are enough B panels,
  // go panel-major: each thread packs one B panel privately (L1-sized) and sweeps every strip
  // of A over it, so B is packed and read once and A stays in L2 (the conv shapes with small M).
  // Otherwise strip-major over (strip, panel) items with B packed once up front and shared.
  const int64_t a_kernel_bytes = decode_a ? S * strip_floats * 4 : a.bytes();
  if (a_kernel_bytes <= (int64_t{768} << 10) && P >= 2 * nt) {
    // Off-chip: widen the whole (small) A to fp32 once per call, then the fp32 kernel.
    float* adec = decode_a ? static_cast<float*>(t_strip.get(S * strip_floats * 4)) : nullptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      // A contiguous range of panels per thread, B prepared by the thread that reads it
      // (fission_conv: the image rows of its own output columns, see prep_rows there).
      const int64_t team = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t q0 = P * tid / team, q1 = P * (tid + 1) / team;
      prep_cols(std::min(N, q0 * NR), std::min(N, q1 * NR));
      if (adec) {
#pragma omp for schedule(static)
        for (int64_t s = 0; s < S; ++s) decode_strip(a, s, adec + s * strip_floats);
      } else if (team > 1) {
#pragma omp barrier
      }
      uint8_t* bp = static_cast<uint8_t*>(t_bpriv.get(panel_stride));
      for (int64_t q = q0; q < q1; ++q) {
        pack_panel(q, bp);
        for (int64_t s = 0; s < S; ++s)
          run_tile(s, q, adec ? static_cast<const void*>(adec + s * strip_floats) : a.strip(s), bp);
      }
    }
    return;
  }

  // Items (strip, panel), strip-major; whole strips per item when there are plenty of strips.
  const int64_t per_item = S >= 4 * nt ? P : 1;
  const int64_t items = S * P / per_item;
  // Up to 2 MiB of panels (CaffeNet conv3-5 at batch 1), each thread packs all of B itself, on
  // its first item: one team-packed copy left half the panels modified in the other core's L2,
  // and each strip pass over them paid cross-core transfers (conv3-5 1.05-1.15x faster with
  // private copies on 2 threads, although the packing is duplicated). Bigger B (batches) is
  // packed once by the team and shared: duplicating it would cost more than it saves.
  const bool private_b = P * panel_stride <= (int64_t{2} << 20);
  uint8_t* bshared = private_b ? nullptr : static_cast<uint8_t*>(t_bpack.get(P * panel_stride));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    prep();
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    uint8_t* bpack = bshared;
    if (!private_b) {
      for (int64_t q = tid; q < P; q += team) pack_panel(q, bpack + q * panel_stride);
      if (team > 1) {
#pragma omp barrier
      }
    }
    int64_t cached = -1;   // the strip this thread last decoded (off-chip / portable)
    float* sbuf = decode_a ? static_cast<float*>(t_strip.get(strip_floats * 4)) : nullptr;
    auto body = [&](int64_t it) {
      if (!bpack) {
        bpack = static_cast<uint8_t*>(t_bpack.get(P * panel_stride));
        for (int64_t q = 0; q < P; ++q) pack_panel(q, bpack + q * panel_stride);
      }
      const int64_t first = it * per_item;
      for (int64_t w = first; w < first + per_item; ++w) {
        const int64_t s = w / P, q = w % P;
        const void* astrip = a.strip(s);
        if (sbuf) {
          if (cached != s) {
            decode_strip(a, s, sbuf);
            cached = s;
          }
          astrip = sbuf;
        }
        run_tile(s, q, astrip, bpack + q * panel_stride);
      }
    };
    // A GEMV (N <= 2, the streaming tiles of simd::split_steps): contiguous strips per thread,
    // so that each strip's prefetches run on into the strip the same thread reads next.
    if (N <= 2) {
      for (int64_t it = items * tid / team; it < items * (tid + 1) / team; ++it) body(it);
    } else {
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; ++it) body(it);
    }
  }
}

// A run of n <= NR consecutive columns of C (from column col) whose B values lie in one row of
// fission_conv's padded, phased image, starting boff floats into it.
struct DirectChunk {
  int64_t boff, col;
  int n;
  int len0;        // n, or (split) the columns from the first row; the rest from the next
  int64_t boff2;   // split: where the next row's columns start
};

// fission_conv without B panels: the direct tile broadcasts B from the image (src/gemm/fission.h).
// Work: (strip, chunk) pairs. A small A (<= 768 KiB as the kernel reads it) goes chunk-major
// (each chunk's B rows stay in L1 while every strip passes over them); a bigger one strip-major
// (a strip stays in L1/L2 across the chunks; the image is read-only, shared by both cores).
// prep(): the team's image copy split by channel, with a barrier; prep_own(c0, c1): the copy
// of every image row output columns [c0, c1) read into the calling thread's own buffer, which
// it returns (null: nothing copied, the tiles read the images in place), no barrier. Chunks are
// in column order; N columns in all.
// tile(s, chunk, c, m, rows, own): one tile of strip s on a chunk (rows: the conv output pass,
// or null; own: the thread's copy from prep_own, or null: the shared copy or the images).
// Where C column j lives (FissionConvShape::out_image_stride): plain (column j of C), or, with
// cimg != 0, pixel j % P of image j / P at C + (j / P) * cimg (a chunk never spans two images).
struct OutMap {
  int64_t P = 1, cimg = 0, rimg = 0;
  bool prefetch = false;   // FissionConvShape::out_streams
  int64_t c_off(int64_t j) const { return cimg ? j / P * cimg + j % P : j; }
  int64_t r_off(int64_t j) const { return cimg ? j / P * rimg + j % P : j; }
};

// One thread's share of drive_direct's items: [q0, head) run by it, [head, end) claimed in
// units from next, by it or by a thread done with its own share (which then reads own, the
// owner's copy of the image rows, once ready is set).
struct alignas(64) StealShare {
  int64_t q0 = 0, head = 0, end = 0;
  std::atomic<int64_t> next{0};
  const float* own = nullptr;
  std::atomic<int> ready{0};
};
template <class Tile, class Prep, class PrepOwn>
void drive_direct(const FissionPackedA& a, const DirectChunk* chunks, int64_t nchunks, int64_t N,
                  float* C, int64_t ldc, double flops, Tile&& tile, Prep&& prep,
                  PrepOwn&& prep_own, const TileEpilogue* epi, const OutMap& om) {
  const int64_t M = a.rows();
  const int MR = a.mr();
  const int64_t S = a.strips();
  const int nt = team_size(flops);
  auto run_tile = [&](int64_t s, const DirectChunk& ch, const float* own) {
    const int m = static_cast<int>(std::min<int64_t>(MR, M - s * MR));
    float* c = C + s * MR * ldc + om.c_off(ch.col);
    // The output streams to DRAM (FissionConvShape::out_streams): the tile's C lines fetched
    // as it starts, so that its stores (32 rows, each a line or two) find them in cache
    // instead of filling the store queue with misses. CaffeNet's conv1 at batch 32 in bf16
    // (37 MB of output), 2 threads, alternated: 14.4 -> 13.4 ms; conv2 0.98x; at batch 1
    // (the output in cache) ResNet-18 and SqueezeNet were 1-1.5% slower with it.
    if (om.prefetch)
      for (int i = 0; i < m; ++i) {
        const char* r = reinterpret_cast<const char*>(c + i * ldc);
        _mm_prefetch(r, _MM_HINT_T0);
        _mm_prefetch(r + 4 * (ch.n - 1), _MM_HINT_T0);
      }
    if (epi && !epi->fn) {
      const TileRows rows{epi->bias ? epi->bias + s * MR : nullptr,
                          epi->res ? epi->res + s * MR * epi->ldr + om.r_off(ch.col) : nullptr,
                          epi->ldr, epi->relu};
      tile(s, ch, c, m, &rows, own);
      return;
    }
    tile(s, ch, c, m, nullptr, own);
    if (epi) epi->fn(epi->ctx, s * MR, ch.col, m, ch.n, c, ldc);
  };
  // Three schedules. chunk_major: a small A (<= 768 KiB), each chunk's B rows in L1 while
  // every strip passes over them; side: big strips streamed from memory, each thread its
  // contiguous strips, all chunks of one before the next, the next strip prefetched into L2
  // meanwhile; else dynamic over (strip, chunk) items.
  const bool chunk_major = a.bytes() <= (int64_t{768} << 10) && nchunks >= 2 * nt;
  const bool side = !chunk_major && g_side_prefetch && S >= 2 * nt && nchunks >= 3 &&
                    a.strip_bytes() >= (int64_t{128} << 10);
  // The static schedules give each thread a contiguous share of the items (chunk_major: w =
  // chunk * S + strip; side: w = strip * nchunks + chunk). A share's head runs as assigned;
  // with tail sharing, its last quarter is claimed from a counter in units of a few tiles, by
  // its owner or by a thread done with its own share, so that a core slowed by the machine's
  // other tenants, or a share that costs more, does not keep the team waiting at the join.
  // 2 threads, SqueezeNet batch 1: the two cores' busy times ~35 us apart on its 55x55 3x3
  // conv (~140 us), ~2 us with the tails shared. Alternated, 2 threads, batch 1: SqueezeNet
  // 2.1%, ResNet-18 1%, AlexNet / CaffeNet 1.1% faster; batch 16 even.
  // chunk_major shares tails with at least 8 chunks a thread (a stolen chunk reads its rows
  // from the owner's copy, in the other core's cache); with fewer, the shares are cut at
  // items, not chunks (a chunk's strips may go to both threads, which both copy its rows):
  // ResNet-18's 7x7 downsample (7 chunks: 3 against 4) 0.140 -> 0.136 ms, SqueezeNet's 13x13
  // 3x3 convs (15 chunks) 4-5% faster.
  const bool stat = chunk_major || side;
  const int64_t per_unit = chunk_major ? S : nchunks;   // items in a chunk / a strip
  const int64_t units = chunk_major ? nchunks : S;
  const bool share_tails = g_share_tails && (side || nchunks >= 8 * nt);
  // Claimed tail units: ~4096 / K tiles (a few thousand FMAs per lane), within a chunk.
  const int64_t unit =
      chunk_major ? std::clamp<int64_t>(4096 / std::max<int64_t>(a.depth(), 1), 1, S) : 1;
  constexpr int kLocalShares = 8;
  StealShare local[kLocalShares];
  std::unique_ptr<StealShare[]> heap(stat && nt > kLocalShares ? new StealShare[nt] : nullptr);
  StealShare* shares = heap ? heap.get() : local;
  // Where share t of `team` starts: at an item, or at a unit (chunk / strip) boundary.
  auto cut = [&](int64_t t, int64_t team, bool by_item) {
    return by_item ? units * per_unit * t / team : units * t / team * per_unit;
  };
  const bool by_item = chunk_major && !share_tails;
  for (int t = 0; stat && t < nt; ++t) {
    StealShare& sh = shares[t];
    sh.q0 = cut(t, nt, by_item);
    sh.end = cut(t + 1, nt, by_item);
    sh.head = share_tails ? sh.end - (sh.end - sh.q0) / 4 : sh.end;
  }
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    if (stat) {
      const int tid = omp_get_thread_num(), team = omp_get_num_threads();
      // (A team smaller than asked for: plain static shares of the items, nothing shared.)
      StealShare solo;
      const bool full_team = team == nt;
      if (!full_team) {
        solo.q0 = cut(tid, team, true);
        solo.end = solo.head = cut(tid + 1, team, true);
      }
      StealShare& me = full_team ? shares[tid] : solo;
      const float* own = nullptr;
      if (chunk_major) {
        // Each thread reads its chunks from its own copy of the image rows they read. With
        // one copy split by output rows (each thread copying the rows it owned, a barrier,
        // then the halo rows read from the other core) the barrier wait and the halo reads
        // were ~9% of ResNet-18's 56x56 3x3 conv at batch 1.
        const DirectChunk* last = me.q0 < me.end ? &chunks[(me.end - 1) / S] : nullptr;
        own = last ? prep_own(chunks[me.q0 / S].col, last->col + last->n) : prep_own(N, N);
      } else {
        prep();
      }
      me.own = own;
      me.ready.store(1, std::memory_order_release);
      if (g_share_tails_stall_us > 0 && tid == 1)
        std::this_thread::sleep_for(std::chrono::microseconds(g_share_tails_stall_us));
      const int64_t sb = a.strip_bytes();
      const int64_t s_end = chunk_major ? 0 : (me.end - 1) / nchunks + 1;
      auto run_item = [&](int64_t w, int64_t w_end, const float* img, bool head) {
        if (!chunk_major) {
          const int64_t s = w / nchunks, q = w % nchunks;
          // While chunks 1.. of a strip run from L2, the tiles bring the thread's next strip
          // in (t_side), so that its first chunk does not wait on DRAM.
          if (head && q >= 1 && s + 1 < s_end) {
            const char* nx = reinterpret_cast<const char*>(a.strip(s + 1));
            t_side.p = nx + sb * (q - 1) / (nchunks - 1);
            t_side.e = nx + sb * q / (nchunks - 1);
          } else {
            t_side = {};
          }
          run_tile(s, chunks[q], img);
          return;
        }
        const int64_t q = w / S, s = w % S;
        // The residual lines this strip adds on the thread's next chunk (S tiles on): a
        // residual just written by the other core, or gone to L3, stalled the output pass
        // of every tile. ResNet-18's fused downsample + add, batch 1, 2 threads:
        // 0.132 -> 0.113 ms (layer2), 0.126 -> 0.113 ms (layer3). (Prefetching the C lines
        // too: no change.)
        if (epi && epi->res && w + S < w_end) {
          const DirectChunk& nx = chunks[q + 1];
          const int64_t m = std::min<int64_t>(MR, M - s * MR);
          const float* r = epi->res + s * MR * epi->ldr + om.r_off(nx.col);
          for (int64_t i = 0; i < m; ++i)
            for (int j = 0; j < nx.n; j += 16)
              _mm_prefetch(reinterpret_cast<const char*>(r + i * epi->ldr + j), _MM_HINT_T0);
        }
        run_tile(s, chunks[q], img);
      };
      // Runs the unclaimed units of o's tail; returns the tiles run.
      auto drain = [&](StealShare& o, const float* img) {
        int64_t ran = 0;
        for (int64_t u; o.head + (u = o.next.fetch_add(1, std::memory_order_relaxed)) * unit <
                        o.end;)
          for (int64_t w = o.head + u * unit; w < std::min(o.head + (u + 1) * unit, o.end);
               ++w, ++ran)
            run_item(w, o.end, img, false);
        return ran;
      };
      for (int64_t w = me.q0; w < me.head; ++w) run_item(w, me.end, own, true);
      t_side = {};
      drain(me, own);
      for (int v = 1; v < nt && share_tails && full_team; ++v) {
        StealShare& o = shares[(tid + v) % nt];
        if (o.head + o.next.load(std::memory_order_relaxed) * unit >= o.end) continue;
        while (o.ready.load(std::memory_order_acquire) == 0) _mm_pause();
        g_shared_tiles.fetch_add(drain(o, o.own), std::memory_order_relaxed);
      }
    } else {
      prep();
      const int64_t per_item = S >= 4 * nt ? nchunks : 1;
      const int64_t items = S * nchunks / per_item;
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; ++it)
        for (int64_t w = it * per_item; w < (it + 1) * per_item; ++w)
          run_tile(w / nchunks, chunks[w % nchunks], nullptr);
    }
  }
}

// Which kernels fission_conv runs (fission_conv_kernel_name says it in words).
enum class ConvPath { panels, direct, direct_px, direct_pairs };
ConvPath conv_path(const FissionPackedA& a, const FissionConvShape& g, FissionMode mode) {
  if (a.channel_pair_taps() > 0) {
    // Several images of short output rows (CaffeNet's 13-wide conv3-5 at batch 32, 7 images
    // per call): the direct tiles would be 7 and 6 wide; 12-wide K-pair panels across rows and
    // images were faster there (conv5 7.9 against 9.8 ms), at batch 1 slower.
    const bool one_row = g.kw == 1 && g.sh == 1 && g.sw == 1;
    const int64_t row = one_row ? g.OH * g.OW : g.OW, chunks = (row + 11) / 12;
    if (g.images > 1 && row < 8 * chunks) return ConvPath::panels;
    return ConvPath::direct_pairs;
  }
  // The direct tile (no B panels) where the ISA has one and B is fp32 as the kernel reads it:
  // not off-chip unless A is fp32 (else A is decoded first), not native bf16 (K-pair panels),
  // not bf16 emulated (B rounded in the panel).
  const FissionConfig& cfg = fission_config(a.isa());
  const bool decoded = (mode == FissionMode::offchip || !cfg.widens) && a.format() != Format::f32;
  // bf16_dot Deft-8 rounds B to bf16 in its panels, natively or not.
  const bool b_bf16 = a.format() == Format::bf16 || a.native_bf16() ||
                      (mode == FissionMode::bf16_dot && is_deft8(a.format()));
  if (!cfg.direct || g_conv_panels || decoded || b_bf16)
    return ConvPath::panels;
  // fp32 convs with a small K run the pixel-vector tile on chunks of up to 48 columns (no
  // transposing store; C rows stored as full vectors). One thread: SqueezeNet's expand1x1
  // (K = 16) 0.085 -> 0.043 ms, squeeze (K = 64) 0.065 -> 0.042 ms, VGG's first conv (3x3,
  // K = 27, 224 wide) 2.36 -> 1.24 ms, LeNet's conv1 (5x5, K = 25) 1.3x, cifarnet's (K = 75)
  // 1.15x; K = 96 even, K >= 128 slower. Column stride 2 reads one phase of the copy, as
  // contiguous as stride 1: hot in cache the column tile was as fast, but with the output going
  // to L3 (a first layer's 3 MiB) its 48-byte row pieces cost more than the FMAs; 2 threads,
  // caches flushed: SqueezeNet's first conv (K = 27, 224 -> 111) 0.322 -> 0.253 ms, ResNet-18's
  // 1x1 stride-2 downsample (K = 64) 0.067 -> 0.059 ms.
  // With at most 16 output channels (SqueezeNet's first squeeze layers) the column tile runs
  // half empty (12 FMAs per k); the pixel-vector tile does 2 x 12 at any K: K = 128, 55 x 55,
  // batch 16, one thread 2.6 -> 1.43 ms (32 channels: even).
  // A first layer on an RGB image (C <= 4) at any K up to 256: its taps read a few rows of the
  // copy, lines shared by neighbouring taps (a 1x1 conv's K = 128 reads 128 planes, slower as
  // pixel vectors). ResNet-18's conv1 (7x7 stride 2, K = 147), 2 threads, hot: 0.68 -> 0.64 ms
  // (with the 8 x 48 tile and vector-aligned chunks below; in the model 0.776 -> 0.743 ms).
  const bool first_layer = g.C <= 4 && a.depth() <= 256;
  // Up to 32 output channels, K <= 256, with images larger than L2 streamed from DRAM (a batch
  // of SqueezeNet's 27x27 squeeze inputs): the pixel tile prefetches each of its K rows a few
  // chunks ahead, the column tile's broadcasts wait on K streams the hardware prefetchers do
  // not follow. Batch 16, 2 threads: fire4/fire5 squeeze (128/256 -> 32) 0.70 -> 0.45 ms and
  // 1.31 -> 0.85 ms. In cache (batch 1) the column tile stays as fast or faster; with 48-64
  // channels or K >= 384 (13x13) the pixel tile was 1.1-1.5x slower.
  const bool streamed_narrow = a.rows() <= 32 && a.depth() <= 256 &&
                               g.images * g.C * g.H * g.W * 4 > (int64_t{1} << 20);
  const bool px_fits = a.depth() <= 96 || a.rows() <= 16 || streamed_narrow || first_layer;
  if (g.sw <= 2 && a.format() == Format::f32 && px_fits &&
      (a.isa() == Isa::avx512 || a.isa() == Isa::avx512_bf16))
    return ConvPath::direct_px;
  return ConvPath::direct;
}

}  // namespace
}  // namespace gemm

void fission_gemm(const FissionPackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                  int64_t ldb, float beta, float* C, int64_t ldc, FissionMode mode,
                  const int64_t* bkidx) {
  check(!a.empty(), "fission_gemm: empty FissionPackedA");
  const int64_t M = a.rows(), K = a.depth();
  // The stored op(B)'s depth: K, or up to the largest index.
  int64_t KB = K;
  if (bkidx) {
    KB = 0;
    for (int64_t k = 0; k < K; ++k) {
      check(bkidx[k] >= 0, "fission_gemm: negative B row index at k=" + std::to_string(k));
      KB = std::max(KB, bkidx[k] + 1);
    }
  }
  gemm::check_packed_call("fission_gemm", M, N, KB, trans_b, ldb, ldc);
  if (N == 0) return;
  if (alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    return;
  }
  const float bscale = gemm::deft8_prescale(a, mode, B, trans_b ? N : KB, trans_b ? KB : N, ldb);
  auto pack = [&](int64_t j0, int64_t nq, bool native, uint8_t* dst) {
    const float* bsrc = trans_b ? B + j0 * ldb : B + j0;
    if (native) {
      uint16_t* d16 = reinterpret_cast<uint16_t*>(dst);
      if (!trans_b && !bkidx) {
        pack_bf16_pairs(bsrc, ldb, K, nq, d16);
      } else {
        float* tmp = static_cast<float*>(gemm::t_tmp.get(K * nq * 4));
        gemm::pack_b(trans_b, K, nq, bsrc, ldb, static_cast<int>(nq), 0, 1, tmp, bkidx);
        pack_bf16_pairs(tmp, nq, K, nq, d16);
      }
    } else {
      float* df = reinterpret_cast<float*>(dst);
      gemm::pack_b(trans_b, K, nq, bsrc, ldb, static_cast<int>(nq), 0, 1, df, bkidx);
      if (bscale != 0.0f)
        for (int64_t i = 0; i < K * nq; ++i) df[i] *= bscale;   // exact: a power of two, no overflow
    }
  };
  gemm::drive(a, N, alpha, beta, C, ldc, mode, bscale != 0.0f, [] {}, [](int64_t, int64_t) {},
              pack);
}

void fission_conv(const FissionPackedA& a, const FissionConvShape& g, const float* x, float alpha,
                  float beta, float* C, int64_t ldc, FissionMode mode,
                  const std::vector<int64_t>* kept_rows, const TileEpilogue* epilogue) {
  check(!a.empty(), "fission_conv: empty FissionPackedA");
  const int64_t M = a.rows(), K = a.depth();
  // The shape for messages, built only on an error (not per call).
  auto shape = [&] {
    return " (C=" + std::to_string(g.C) + " H=" + std::to_string(g.H) + " W=" +
           std::to_string(g.W) + " kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
           " OH=" + std::to_string(g.OH) + " OW=" + std::to_string(g.OW) + " K=" +
           std::to_string(K) + ")";
  };
  if (!(g.C > 0 && g.H > 0 && g.W > 0 && g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 &&
        g.dh > 0 && g.dw > 0 && g.pt >= 0 && g.pl >= 0 && g.OH > 0 && g.OW > 0 && g.images > 0 &&
        (g.images == 1 || g.image_stride >= g.C * g.H * g.W)))
    check(false, "fission_conv: bad geometry" + shape());
  const int64_t Kfull = g.C * g.kh * g.kw;
  // Channel-pair weights (FissionPackedA::conv_channel_pairs): K is (cp, tap, c % 2). Tap
  // pairs (conv_tap_pairs): K is (c, i, jp, j % 2), horizontally adjacent taps j = 2jp, 2jp + 1.
  const bool paired = a.channel_pair_taps() > 0;
  const bool tap_pairs = paired && a.tap_pair_kw() > 0;
  const int64_t Cp = (g.C + 1) / 2, kwp = (g.kw + 1) / 2;
  if (paired) {
    const int64_t want = tap_pairs ? 2 * g.C * g.kh * kwp : 2 * Cp * g.kh * g.kw;
    if (kept_rows || a.channel_pair_taps() != g.kh * g.kw || a.channel_pair_c() != g.C ||
        K != want || !a.native_bf16() || mode == FissionMode::offchip ||
        (tap_pairs && (a.tap_pair_kw() != g.kw || g.dw != 1)))
      check(false, std::string("fission_conv: ") + (tap_pairs ? "tap" : "channel") +
                       "-pair weights of C=" + std::to_string(a.channel_pair_c()) + " x " +
                       std::to_string(a.channel_pair_taps()) +
                       " taps need this geometry" + (tap_pairs ? " (dilation 1)" : "") +
                       ", no retained rows and the native bf16 kernel" + shape());
  } else if (kept_rows) {
    if (static_cast<int64_t>(kept_rows->size()) != K)
      check(false, "fission_conv: " + std::to_string(kept_rows->size()) +
                       " retained rows for a depth of A" + shape());
    for (const int64_t r : *kept_rows)
      if (r < 0 || r >= Kfull)
        check(false, "fission_conv: retained row " + std::to_string(r) +
                         " outside C * kh * kw = " + std::to_string(Kfull) + shape());
  } else if (Kfull != K) {
    check(false, "fission_conv: C * kh * kw != depth of A" + shape());
  }
  const int64_t P = g.OH * g.OW, N = g.images * P;
  // The output pass on n columns of C from column j0 (c: their first, rows ldc apart; r: the
  // residual's), done after the fact where no tile kernel stored them.
  auto pass_after = [&](int64_t j0, float* c, int64_t n, const float* r) {
    if (!epilogue || !epilogue->active()) return;
    if (epilogue->fn)
      epilogue->fn(epilogue->ctx, 0, j0, static_cast<int>(M), static_cast<int>(n), c, ldc);
    else
      gemm::apply_tile_rows({epilogue->bias, r, epilogue->ldr, epilogue->relu}, c, ldc,
                            static_cast<int>(M), static_cast<int>(n));
  };
  if (g.out_image_stride != 0) {
    if (ldc < P || g.out_image_stride < (M - 1) * ldc + P)
      check(false, "fission_conv: output images " + std::to_string(g.out_image_stride) +
                       " floats apart with ldc=" + std::to_string(ldc) + " overlap" + shape());
    if (alpha == 0.0f || gemm::conv_path(a, g, mode) == gemm::ConvPath::panels) {
      // Panel tiles run across images: side by side into a scratch C, then each image's block
      // copied to its place with the output pass (what the layer did itself before).
      FissionConvShape g2 = g;
      g2.out_image_stride = 0;
      float* tmp = static_cast<float*>(gemm::t_cout.get(M * N * 4));
      const int64_t cimg = g.out_image_stride;
      auto block = [&](bool out) {
        for (int64_t t = 0; t < g.images; ++t)
          for (int64_t i = 0; i < M; ++i) {
            float* d = C + t * cimg + i * ldc;
            float* sp = tmp + i * N + t * P;
            if (out)
              std::copy(sp, sp + P, d);
            else
              std::copy(d, d + P, sp);
          }
      };
      if (beta != 0.0f) block(false);
      fission_conv(a, g2, x, alpha, beta, tmp, N, mode, kept_rows, nullptr);
      block(true);
      for (int64_t t = 0; t < g.images && epilogue; ++t)
        pass_after(t * P, C + t * cimg, P,
                   epilogue->res ? epilogue->res + t * epilogue->res_image_stride : nullptr);
      return;
    }
  } else if (ldc < N) {
    check(false, "fission_conv: ldc=" + std::to_string(ldc) + " < N=" + std::to_string(N));
  }
  if (alpha == 0.0f) {
    gemm::scale_c(M, N, beta, C, ldc);
    pass_after(0, C, N, epilogue ? epilogue->res : nullptr);
    return;
  }
  // The padded, phased copy of the images: element (c, ihp, iwp) of padded image t (ihp = ih +
  // pt, iwp = iw + pl) at t * img + ((c * Hp + ihp) * sw + iwp % sw) * Wp + iwp / sw. Output
  // (oh, ow) of row (c, i, j) reads ihp = oh * sh + i * dh, iwp = ow * sw + j * dw: phase
  // (j * dw) % sw, so one output row's values are contiguous in one phase.
  const int64_t sw = g.sw;
  const int64_t Hp = (g.OH - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  const int64_t Wfull = (g.OW - 1) * sw + (g.kw - 1) * g.dw + 1;
  const int64_t Wp = (Wfull + sw - 1) / sw;
  const gemm::ConvPath path = gemm::conv_path(a, g, mode);
  // Channels of the copy: C floats, or (channel pairs read directly) ceil(C / 2) K-pair words
  // of channels 2cp, 2cp + 1.
  // (Tap pairs: C channels of words pairing each element with its right neighbour.)
  const bool pair_words = path == gemm::ConvPath::direct_pairs;
  const int64_t CH = pair_words && !tap_pairs ? Cp : g.C;
  const int64_t img = CH * Hp * sw * Wp;
  // Deft-8: the image copy below is prescaled (exact), so every panel is.
  const float bscale = gemm::deft8_prescale(a, mode, x, g.images, g.C * g.H * g.W,
                                            g.images == 1 ? g.C * g.H * g.W : g.image_stride);
  const float xscale = bscale != 0.0f ? bscale : 1.0f;
  // A 1x1 convolution with stride 1 and no padding reads the images in place: the padded,
  // phased copy would be the same floats.
  const bool alias = !paired && bscale == 0.0f && g.kh == 1 && g.kw == 1 && g.sh == 1 && sw == 1 &&
                     g.pt == 0 && g.pl == 0 && g.OH == g.H && g.OW == g.W;
  float* xs = alias ? nullptr : static_cast<float*>(gemm::t_image.get(g.images * img * 4));
  const float* xb = alias ? x : xs;                    // what the kernels read B from
  const int64_t img_b = alias ? g.image_stride : img;  // elements between its images
  // Row k = (c, i, j) starts at c * chan + tap[i * kw + j]: the taps once, then one division
  // per retained row (none when dense) instead of five; at batch 1 this loop is a fixed cost of
  // every call (~4% of CaffeNet's conv5 at 50% retained with five). Per-thread buffer: no
  // allocation per call.
  const int64_t taps = g.kh * g.kw, chan = Hp * sw * Wp;
  // (pair_words: one offset per K pair, cp * chan + tap; channel pairs on panels: row (cp, tap,
  // h) of K' is channel 2cp + h, the pad channel of an odd C reading channel 2cp under its zero
  // weights.)
  // The same per-thread buffer holds the Hp flags of row_read below.
  int64_t* rowoff = reinterpret_cast<int64_t*>(gemm::t_rowoff.get((K + taps) * 8 + Hp));
  int64_t* tap = rowoff + K;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j)
      tap[i * g.kw + j] = (i * g.dh * sw + (j * g.dw) % sw) * Wp + (j * g.dw) / sw;
  if (tap_pairs) {   // words (row p); fp32 panels (row 2p + h; the pad tap reads j = kw - 1)
    for (int64_t c = 0, p = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t jp = 0; jp < kwp; ++jp)
          for (int64_t h = 0; h < (pair_words ? 1 : 2); ++h, ++p)
            rowoff[p] = c * chan + tap[i * g.kw + std::min(2 * jp + h, g.kw - 1)];
  } else if (pair_words) {
    for (int64_t c = 0, p = 0; c < Cp; ++c)
      for (int64_t q = 0; q < taps; ++q, ++p) rowoff[p] = c * chan + tap[q];
  } else if (paired) {
    for (int64_t c = 0, p = 0; c < Cp; ++c)
      for (int64_t q = 0; q < taps; ++q)
        for (int64_t h = 0; h < 2; ++h, ++p)
          rowoff[p] = std::min(2 * c + h, g.C - 1) * chan + tap[q];
  } else if (kept_rows) {
    for (int64_t p = 0; p < K; ++p) {
      const int64_t k = (*kept_rows)[static_cast<size_t>(p)];
      rowoff[p] = k / taps * chan + tap[k % taps];
    }
  } else {
    for (int64_t c = 0, p = 0; c < g.C; ++c)
      for (int64_t q = 0; q < taps; ++q, ++p) rowoff[p] = c * chan + tap[q];
  }
  // Per phase, the padded columns [m0, m1) that read iw = m * sw + ph - pl inside [0, W); zeros
  // around. Loop-invariant: hoisted out of the rows (at most 16 phases: stride <= 16 here).
  int64_t span_small[32];
  std::vector<int64_t> span_big;
  int64_t* span = span_small;
  if (sw > 16) {
    span_big.resize(static_cast<size_t>(2 * sw));
    span = span_big.data();
  }
  for (int64_t ph = 0; ph < sw; ++ph) {
    const int64_t o = ph - g.pl;
    const int64_t m0 = std::min(Wp, o >= 0 ? 0 : (-o + sw - 1) / sw);
    span[2 * ph] = m0;
    span[2 * ph + 1] = std::max(m0, std::min(Wp, g.W - o > 0 ? (g.W - o + sw - 1) / sw : 0));
  }
  const int64_t rows = g.images * CH * Hp;
  // Only the padded rows and phases some kernel tap reads are written (the others are never
  // read): a strided 1x1 conv (ResNet's downsample, stride 2) reads one row in sh and one
  // phase in sw, a quarter of the copy (0.135 -> 0.071 ms, 2 threads).
  char* row_read = reinterpret_cast<char*>(tap + taps);
  std::fill(row_read, row_read + Hp, 0);
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t i = 0; i < g.kh; ++i) row_read[oh * g.sh + i * g.dh] = 1;
  uint32_t phase_read = 0;   // bit ph (sw <= 32 here) or all phases
  for (int64_t j = 0; j < g.kw && sw <= 32; ++j) phase_read |= 1u << ((j * g.dw) % sw);
  if (sw > 32) phase_read = ~0u;
  const bool avx512_rows = active_isa() == Isa::avx512 || active_isa() == Isa::avx512_bf16;
  // The source row four rows on (the next channel's once past this one's last: planes are
  // contiguous), one prefetch per cache line: the copy walks rows in order, and at batch 16 the
  // images come from DRAM, where the hardware prefetcher alone left the copy latency-bound.
  // (A prefetch never faults, past the images too.)
  auto prefetch_ahead = [&](const float* srow) {
    for (int64_t w = 0; w < g.W; w += 16)
      _mm_prefetch(reinterpret_cast<const char*>(srow + 4 * g.W + w), _MM_HINT_T0);
  };
  // The sw * Wp floats of padded row ihp of channel c of image t at d (rows some tap reads;
  // unread phases left unwritten unless zero_unread).
  auto fill_row = [&](int64_t t, int64_t c, int64_t ihp, float* d, bool zero_unread) {
    const int64_t ih = ihp - g.pt;
    if (ih < 0 || ih >= g.H) {
      std::fill(d, d + sw * Wp, 0.0f);
      return;
    }
    const float* srow = x + t * g.image_stride + (c * g.H + ih) * g.W;
    prefetch_ahead(srow);
    if (sw == 1 && avx512_rows) {
      gemm::pad_row_f32__avx512(srow - g.pl, d, span[0], span[1], Wp, xscale);
      return;
    }
    if (sw == 2 && avx512_rows) {   // the padded row's two phases
      // Phase 0 is always read (tap j = 0); phase 1 when some tap's column is odd.
      const bool odd = (phase_read & 2u) != 0;
      gemm::pad_deinterleave2_f32__avx512(srow - g.pl, std::min(g.pl, 2 * Wp),
                                          std::min(g.pl + g.W, 2 * Wp), Wp, xscale, d,
                                          odd ? d + Wp : nullptr);
      if (!odd && zero_unread) std::fill(d + Wp, d + 2 * Wp, 0.0f);
      return;
    }
    for (int64_t ph = 0; ph < sw; ++ph) {
      float* dp = d + ph * Wp;
      if (sw <= 32 && !(phase_read >> ph & 1u)) {
        if (zero_unread) std::fill(dp, dp + Wp, 0.0f);
        continue;
      }
      const int64_t m0 = span[2 * ph], m1 = span[2 * ph + 1];
      std::fill(dp, dp + m0, 0.0f);
      const float* sp = srow + (ph - g.pl);
      if (sw == 1 && xscale == 1.0f)
        std::memcpy(dp + m0, sp + m0, sizeof(float) * static_cast<size_t>(m1 - m0));
      else if (sw == 1)
        for (int64_t m = m0; m < m1; ++m) dp[m] = sp[m] * xscale;
      else
        for (int64_t m = m0; m < m1; ++m) dp[m] = sp[m * sw] * xscale;
      std::fill(dp + m1, dp + Wp, 0.0f);
    }
  };
  // Padded row r = (t, c, ihp) of the copy (r = (t * CH + c) * Hp + ihp); paired: channels 2c
  // and 2c + 1 filled into per-thread fp32 rows, then rounded into K-pair words.
  auto copy_row = [&](int64_t t, int64_t c, int64_t ihp, float* base) {
    if (!row_read[ihp]) return;
    const int64_t at = ((t * CH + c) * Hp + ihp) * sw * Wp;
    if (!pair_words) {
      fill_row(t, c, ihp, base + at, false);
      return;
    }
    uint32_t* xw = reinterpret_cast<uint32_t*>(base);
    if (tap_pairs) {
      // Word (ph, m) pairs padded element m * sw + ph with its right neighbour: phase ph + 1 at
      // m, or for the last phase phase 0 at m + 1 (zero past the copy).
      float* lo = static_cast<float*>(gemm::t_tmp.get(2 * sw * Wp * 4));
      float* hi = lo + sw * Wp;
      fill_row(t, c, ihp, lo, true);
      std::copy(lo + Wp, lo + sw * Wp, hi);
      std::copy(lo + 1, lo + Wp, hi + (sw - 1) * Wp);
      hi[sw * Wp - 1] = 0.0f;
      gemm::pair_words__avx512bf16(lo, hi, sw * Wp, xw + at);
      return;
    }
    const bool has_hi = 2 * c + 1 < g.C;
    if (sw == 1) {   // pair words only run on avx512_bf16
      const int64_t ih = ihp - g.pt;
      if (ih < 0 || ih >= g.H) {
        std::fill(xw + at, xw + at + Wp, 0u);
        return;
      }
      const float* s0 = x + t * g.image_stride + (2 * c * g.H + ih) * g.W - g.pl;
      prefetch_ahead(s0 + g.pl);
      if (has_hi) prefetch_ahead(s0 + g.pl + g.H * g.W);
      gemm::pair_words_pad__avx512bf16(s0, has_hi ? s0 + g.H * g.W : nullptr, span[0], span[1],
                                       Wp, xscale, xw + at);
      return;
    }
    float* lo = static_cast<float*>(gemm::t_tmp.get(2 * sw * Wp * 4));
    float* hi = lo + sw * Wp;
    fill_row(t, 2 * c, ihp, lo, true);
    if (has_hi) fill_row(t, 2 * c + 1, ihp, hi, true);
    gemm::pair_words__avx512bf16(lo, has_hi ? hi : nullptr, sw * Wp, xw + at);
  };
  // Rows split evenly over the team by hand, so that (image, channel, row) advance by carries
  // instead of three divisions per row: at batch 1 the copy is a fixed cost of every call (as
  // large for an eliminated layer as for the dense one), and the divisions were most of it for
  // CaffeNet's 13-wide rows (conv5 at 50% retained: ~8% of the eliminated layer).
  auto prep = [&] {
    if (alias) return;
    const int64_t team = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = rows * tid / team, r1 = rows * (tid + 1) / team;
    int64_t ihp = r0 % Hp, c = r0 / Hp % CH, t = r0 / (CH * Hp);
    for (int64_t r = r0; r < r1; ++r) {
      copy_row(t, c, ihp, xs);
      if (++ihp == Hp) {
        ihp = 0;
        if (++c == CH) {
          c = 0;
          ++t;
        }
      }
    }
#pragma omp barrier
  };
  // The direct path's copy by output rows: a thread copies, for every channel, the padded rows
  // of the output rows [o0, o1) it computes (global rows o = t * OH + oh; padded rows from
  // oh * sh up to the next owner's first; the last output row's owner takes the bottom
  // padding), so its B reads are its own writes except the kh - 1 halo rows. Split by channel
  // (prep), every chunk read half its rows from the other core's L2: ResNet-18's 56x56 convs
  // ran at 1.4x one thread's speed on two, a 1x1 conv of the same GEMM shape at 1.85x.
  auto prep_rows = [&](int64_t o0, int64_t o1) {
    if (alias || o0 >= o1) return;
    for (int64_t t = o0 / g.OH; t <= (o1 - 1) / g.OH; ++t) {
      const int64_t a0 = std::max<int64_t>(o0 - t * g.OH, 0), a1 = std::min(o1 - t * g.OH, g.OH);
      const int64_t h0 = a0 == 0 ? 0 : a0 * g.sh, h1 = a1 == g.OH ? Hp : a1 * g.sh;
      for (int64_t c = 0; c < CH; ++c)
        for (int64_t ihp = h0; ihp < h1; ++ihp) copy_row(t, c, ihp, xs);
    }
  };
  // Output row r's first column is r * OW (P = OH * OW).
  auto prep_cols = [&](int64_t c0, int64_t c1) {
    prep_rows((c0 + g.OW - 1) / g.OW, (c1 + g.OW - 1) / g.OW);
  };
  // The direct path's private copy: every padded row that output columns [c0, c1) read (their
  // halo rows too) into the calling thread's own buffer, laid out as the shared copy, so no
  // barrier is needed and every B read hits this core's cache. Returns the buffer (null: the
  // images are read in place). The kh - 1 halo rows are copied twice, by both neighbours.
  auto prep_own = [&](int64_t c0, int64_t c1) -> const float* {
    if (alias) return nullptr;
    float* own = static_cast<float*>(gemm::t_image.get(g.images * img * 4));
    if (c0 >= c1) return own;
    const int64_t o0 = c0 / g.OW, o1 = (c1 - 1) / g.OW + 1;   // output rows, global
    for (int64_t t = o0 / g.OH; t <= (o1 - 1) / g.OH; ++t) {
      const int64_t a0 = std::max<int64_t>(o0 - t * g.OH, 0), a1 = std::min(o1 - t * g.OH, g.OH);
      const int64_t h0 = a0 * g.sh;
      const int64_t h1 = a1 == g.OH ? Hp : std::min(Hp, (a1 - 1) * g.sh + (g.kh - 1) * g.dh + 1);
      for (int64_t c = 0; c < CH; ++c)
        for (int64_t ihp = h0; ihp < h1; ++ihp) copy_row(t, c, ihp, own);
    }
    return own;
  };
  auto pack = [&](int64_t j0, int64_t nq, bool native, uint8_t* dst) {
    gemm::PanelSeg seg[16];
    int nseg = 0;
    for (int64_t p = j0, lane = 0; lane < nq; ++nseg) {
      const int64_t t = p / P, rem = p % P, oh = rem / g.OW, ow = rem % g.OW;
      const int64_t len = std::min(g.OW - ow, nq - lane);
      seg[nseg] = {static_cast<int>(lane), static_cast<int>(len),
                   t * img_b + oh * g.sh * sw * Wp + ow};
      lane += len;
      p += len;
    }
    gemm::panel_builder(a.isa(), native)(xb, rowoff, K, seg, nseg, static_cast<int>(nq),
                                         dst);
  };
  const gemm::FissionConfig& cfg = gemm::fission_config(a.isa());
  if (path != gemm::ConvPath::panels) {
    // Output rows cut into chunks of at most NR columns, as even as possible (56 = 12 + 11 x 4,
    // not 12 x 4 + 8); a 1x1 stride-1 conv's image is one long row (any column run is contiguous).
    // The pixel-vector tile's chunks are whole vectors of 16 columns, up to 3 (the row's last
    // chunk takes the partial vector): 112 = 32 + 32 + 48, not 4 x 28 with every chunk's second
    // vector 12/16 full. SqueezeNet's conv1 (111 wide), 2 threads: 0.193 -> 0.169 ms.
    const bool one_row = g.kw == 1 && g.sh == 1 && sw == 1;
    const bool px = path == gemm::ConvPath::direct_px;
    const int NR = px ? 48 : cfg.nr;
    const int64_t row_len = one_row ? P : g.OW, rows_per_image = one_row ? 1 : g.OH;
    const int64_t vecs = (row_len + 15) / 16;   // px: chunks in vectors
    const int64_t per_row = px ? (vecs + 2) / 3 : (row_len + NR - 1) / NR;
    // Short rows (fp32 or channel-pair tiles, not one long row): chunks of 12 run on into the
    // next output row (two segments), instead of cutting each row (13 = 7 + 6).
    // The pixel tile on rows of 17-24 columns: chunks of two whole rows (3 vectors, 71-100%
    // full, instead of 2 per row, 53-75%), an odd last row alone. LeNet's conv1 (24 wide, K =
    // 25, 20 channels) in the model at batch 32, 2 threads, old and new builds alternated:
    // 0.195-0.200 -> 0.156-0.177 ms on a busy machine, 0.129-0.139 -> 0.117-0.120 on a quiet one.
    const bool px_pairs = px && !one_row && g.OW > 16 && g.OW <= 24 && g.OH > 1;
    bool split = px_pairs || (!one_row && !px && g.OW < 32 && g.OH > 1 &&
                              (pair_words || a.format() == Format::f32));
    const int64_t split_nr = px_pairs ? 2 * g.OW : NR;   // a split chunk's columns
    // The split chunks in column order: emit(t, r, c, take, extra) for a chunk of image t from
    // row r, column c: take columns there, then extra (0, or split_nr - take) from row r + 1.
    auto walk_split = [&](auto&& emit) {
      for (int64_t t = 0; t < g.images; ++t)
        for (int64_t r = 0, c = 0; r < g.OH;) {
          const int64_t take = std::min<int64_t>(split_nr, g.OW - c);
          const int64_t extra = take < split_nr && c + take == g.OW && r + 1 < g.OH &&
                                        split_nr - take <= g.OW
                                    ? split_nr - take
                                    : 0;
          emit(t, r, c, take, extra);
          if (extra > 0) {
            ++r;
            c = extra;
          } else {
            c += take;
          }
          if (c == g.OW) {
            ++r;
            c = 0;
          }
        }
    };
    int64_t nchunks = g.images * rows_per_image * per_row;
    if (split) {
      // Where two segments cannot fill a chunk, the row's remainder is a narrow chunk of its
      // own (OW = 7: 7 + 5, then 2 alone). A tile of 2 columns streams its 32 rows of A from
      // L2 for 4 FMAs per k, bandwidth-bound: ResNet-18's 7x7 convs spent 30% of their time
      // in such tiles. Then one chunk per row is cheaper (7 columns, FMA-bound).
      int64_t count = 0, narrow = 0;
      walk_split([&](int64_t t, int64_t r, int64_t c, int64_t take, int64_t extra) {
        ++count;
        const bool last = t == g.images - 1 && r == g.OH - 1 && c + take == g.OW;
        if (take + extra < 6 && !last) ++narrow;
      });
      if (narrow > 0)
        split = false;
      else
        nchunks = count;
    }
    auto* chunks = static_cast<gemm::DirectChunk*>(
        gemm::t_chunks.get(nchunks * static_cast<int64_t>(sizeof(gemm::DirectChunk))));
    int64_t q = 0;
    const int64_t rstride = g.sh * sw * Wp;   // elements between output rows' B
    if (split) {
      walk_split([&](int64_t t, int64_t r, int64_t c, int64_t take, int64_t extra) {
        chunks[q++] = {t * img_b + r * rstride + c, t * P + r * g.OW + c,
                       static_cast<int>(take + extra), static_cast<int>(take),
                       t * img_b + (r + 1) * rstride};
      });
    } else {
      for (int64_t t = 0; t < g.images; ++t)
        for (int64_t r = 0; r < rows_per_image; ++r)
          for (int64_t i = 0; i < per_row; ++i, ++q) {
            const int64_t lo = px ? std::min(row_len, 16 * (vecs * i / per_row))
                                  : row_len * i / per_row;
            const int64_t hi = px ? std::min(row_len, 16 * (vecs * (i + 1) / per_row))
                                  : row_len * (i + 1) / per_row;
            chunks[q] = {t * img_b + r * rstride + lo, t * P + r * g.OW + lo,
                         static_cast<int>(hi - lo), static_cast<int>(hi - lo), 0};
          }
    }
    const bool scaled = bscale != 0.0f;
    const float* xb_shared = xb;
    auto tile = [&](int64_t s, const gemm::DirectChunk& ch, float* c, int m,
                    const gemm::TileRows* rows, const float* own) {
      const float* xb = own ? own : xb_shared;
      const uint32_t* xw = reinterpret_cast<const uint32_t*>(xb);
      const int n = ch.n;
      if (ch.len0 < n && px) {   // two whole rows
        gemm::fission_tile_direct_px2__avx512(K, reinterpret_cast<const float*>(a.strip(s)),
                                              xb + ch.boff, xb + ch.boff2, ch.len0, rowoff, c,
                                              ldc, m, n, alpha, beta, rows);
      } else if (ch.len0 < n) {   // over two rows: n == NR == 12
        if (pair_words)
          gemm::fission_tile_pairs_direct2__avx512bf16(K, a.strip(s), xw + ch.boff,
                                                       xw + ch.boff2, ch.len0, rowoff, c, ldc,
                                                       m, alpha, beta, rows);
        else
          gemm::fission_tile_direct2_f32__avx512(K, reinterpret_cast<const float*>(a.strip(s)),
                                                 xb + ch.boff, xb + ch.boff2, ch.len0, rowoff, c,
                                                 ldc, m, alpha, beta, rows);
      } else if (px) {
        gemm::fission_tile_direct_px__avx512(K, reinterpret_cast<const float*>(a.strip(s)),
                                             xb + ch.boff, rowoff, c, ldc, m, n, alpha, beta,
                                             rows);
      } else if (pair_words) {
        gemm::fission_tile_pairs_direct__avx512bf16(K, a.strip(s), xw + ch.boff, rowoff, c, ldc,
                                                    m, n, alpha, beta, rows);
      } else {
        cfg.direct(a.format(), K, a.strip(s), xb + ch.boff, rowoff, c, ldc, m, n, alpha, beta,
                   rows, scaled);
      }
    };
    gemm::drive_direct(a, chunks, nchunks, N, C, ldc, 2.0 * M * N * K, tile, prep, prep_own,
                       epilogue && epilogue->active() ? epilogue : nullptr,
                       gemm::OutMap{P, g.out_image_stride,
                                    epilogue ? epilogue->res_image_stride : 0, g.out_streams});
    return;
  }
  gemm::drive(a, N, alpha, beta, C, ldc, mode, bscale != 0.0f, prep, prep_cols, pack,
              epilogue && epilogue->active() ? epilogue : nullptr);
}

const char* fission_conv_kernel_name(const FissionPackedA& a, const FissionConvShape& g,
                                     FissionMode mode) {
  switch (gemm::conv_path(a, g, mode)) {
    case gemm::ConvPath::direct_pairs: return "fission_tile_pairs_direct_32x12__avx512bf16";
    case gemm::ConvPath::direct_px: return "fission_tile_direct_px_12x32__avx512";
    case gemm::ConvPath::direct: return "fission_tile_direct_32x12__avx512";
    case gemm::ConvPath::panels: break;
  }
  return fission_kernel_name(a, mode);
}

}  // namespace deftnn
