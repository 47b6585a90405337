// deftnn fission GEMM internals: the tile-kernel contract shared by fission.cpp and the per-ISA
// kernel files (fission_kernels_<isa>.cpp). See include/deftnn/fission.h for the layouts.
//
// TILE-KERNEL CONTRACT (FissionTile)
//   void tile(Format f, int64_t K, const void* a, const void* b, float* c, int64_t ldc,
//             int m, int n, float alpha, float beta);
//   f : the strip's format (f32, half, deft16, deft16q, deft8_eN; bf16 only on avx512_bf16,
//       meaning the K-pair layout and vdpbf16ps). A kernel never sees a format it lacks: the
//       driver decodes such strips to f32 first (portable, off-chip mode).
//   a : one packed strip of MR rows x K (layout in fission.h).
//   b : one packed B panel of exactly n columns (no padding): fp32 (k, j) at [k * n + j], or for
//       native bf16 the K-pair words (k/2, j) at [(k / 2) * n + j] (pack_bf16_pairs layout).
//   c : top-left of the C tile, row-major; 1 <= m <= MR, 1 <= n <= NR.
//   C[i][j] = alpha * sum_k widen(a)(i, k) * b(k, j) + beta * C[i][j]  (beta == 0: write-only).
#pragma once
#include <atomic>
#include <cstdint>

#include "deftnn/formats.h"

namespace deftnn::gemm {

using FissionTile = void (*)(Format f, int64_t K, const void* a, const void* b, float* c,
                             int64_t ldc, int m, int n, float alpha, float beta);

// Whether the GEMV tiles (n <= 2) of a reduced format prefetch their weight streams ahead
// (simd::split_steps). On by default; set_fission_gemv_prefetch turns it off for
// before/after benchmarks.
extern bool g_gemv_prefetch;


// The conv output pass on a C tile, done by the kernel on the rows it stores (registers, no
// re-read of C): after alpha / beta, row i (of the tile) gets + bias[i] (bias non-null), then
// + res[i * ldr + j] (res non-null), then ReLU as v > 0 ? v : 0 * v (relu). Pointers are the
// tile's own (row 0, column 0). apply_tile_rows is the reference (and the fallback of kernels
// without it).
// Lines of another strip that the AVX-512 fission tiles of 3 or more columns prefetch into L2
// as they run, one line per k (simd::side_prefetched_steps), consuming the range: drive_direct
// sets it to the strip the thread reads next. Per thread; empty: nothing.
struct SideRange {
  const char* p = nullptr;
  const char* e = nullptr;
};
extern thread_local SideRange t_side;
// drive_direct's next-strip prefetch (default on; off for before/after benchmarks).
extern bool g_side_prefetch;
// drive_direct's shared tails: the last quarter of each thread's share of a direct conv run
// by whichever thread gets to it first (default on; off for before/after benchmarks), and the
// count of tiles a thread ran from another's share since the start (for tests).
extern bool g_share_tails;
extern std::atomic<int64_t> g_shared_tiles;
// Tests: thread 1 of a direct conv's team sleeps this long once its share is offered, so that
// the other thread takes its tail whatever the machine's load (0: never).
extern int g_share_tails_stall_us;

struct TileRows {
  const float* bias;
  const float* res;
  int64_t ldr;
  bool relu;
};
inline void apply_tile_rows(const TileRows& t, float* c, int64_t ldc, int m, int n) {
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (t.bias) {
      const float bv = t.bias[i];
      for (int j = 0; j < n; ++j) row[j] += bv;
    }
    if (t.res) {
      const float* r = t.res + i * t.ldr;
      for (int j = 0; j < n; ++j) row[j] += r[j];
    }
    if (t.relu)
      for (int j = 0; j < n; ++j) {
        const float v = row[j], z = 0.0f * v;
        row[j] = v > 0.0f ? v : z;
      }
  }
}
// A FissionTile that also applies TileRows (rows may be null: plain FissionTile).
using FissionTileRows = void (*)(Format f, int64_t K, const void* a, const void* b, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta,
                                 const TileRows* rows);
void fission_tile_rows__avx512(Format, int64_t, const void*, const void*, float*, int64_t, int,
                               int, float, float, const TileRows*);
void fission_tile_rows__avx512bf16(Format, int64_t, const void*, const void*, float*, int64_t,
                                   int, int, float, float, const TileRows*);

// Deft-8 on the bf16 unit (FissionMode::bf16_dot, native): a strip is 32 rows x K pairs of
// codes, 64 bytes per k pair; the code of row i, k = 2 kp + h sits at byte d8pair_byte(i, h)
// of k pair kp's block: the order in which two in-lane byte interleaves (vpunpcklbw /
// vpunpckhbw of the looked-up low and high bytes) leave rows 0..15 as the 32 words of the first
// zmm and rows 16..31 as the second, word 2i + h of each.
inline int d8pair_byte(int i, int h) {
  const int w = 2 * (i & 15) + h;
  return (w / 8) * 16 + (i >= 16 ? 8 : 0) + w % 8;
}
// The tile (FissionTileRows contract; f a deft8_eN, a such a strip, b a native bf16 K-pair
// panel). Needs avx512_bf16 and AVX512_VBMI.
void fission_tile_d8dot__avx512bf16(Format f, int64_t K, const void* a, const void* b, float* c,
                                    int64_t ldc, int m, int n, float alpha, float beta,
                                    const TileRows* rows);

void fission_tile__portable(Format, int64_t, const void*, const void*, float*, int64_t, int, int,
                            float, float);
void fission_tile__avx2(Format, int64_t, const void*, const void*, float*, int64_t, int, int,
                        float, float);
void fission_tile__avx512(Format, int64_t, const void*, const void*, float*, int64_t, int, int,
                          float, float);
void fission_tile__avx512bf16(Format, int64_t, const void*, const void*, float*, int64_t, int,
                              int, float, float);
// Deft-8 with a PRESCALED B panel (f is a deft8_eN): the panel holds b * 2^(127 - bias), so the
// kernel widens a code to its fp32 bits (sign-extend, shift, AND) and skips the per-weight
// multiply by 2^(127 - bias). fma(bits, b * scale) == fma(bits * scale, b) bit for bit: scale is
// a power of two, bits * scale is the exact Deft-8 value and b * scale is exact when
// |b| < Deft8Widen::limit (the driver scans B once per call; a B with a larger, infinite or NaN
// value runs the multiplying kernel). Saves one FMA-port op per 16 weights: Deft-8 at the speed
// of fp32 in compute-bound tiles, and the GEMV (fc at batch 1) stream no longer port-bound.
void fission_tile_d8s__avx2(Format, int64_t, const void*, const void*, float*, int64_t, int, int,
                            float, float);
void fission_tile_d8s__avx512(Format, int64_t, const void*, const void*, float*, int64_t, int,
                              int, float, float);

// DIRECT TILES (fission_conv without B panels, fp32 B only):
//   void direct(Format f, int64_t K, const void* a, const float* b, const int64_t* rowoff,
//               float* c, int64_t ldc, int m, int n, float alpha, float beta,
//               const TileRows* rows, bool scaled);
//   The FissionTileRows contract with B read in place: b(k, j) = b[rowoff[k] + j], j < n (n
//   consecutive floats of one row of the padded, phased image, any alignment; every address
//   valid). scaled: a Deft-8 f on a prescaled image (the fission_tile_d8s kernel). No format
//   whose B is not fp32 (native bf16 pairs). Panel packing was 20-25% of a 3x3 conv's time
//   at batch 1 (ResNet-18); broadcasting from the image costs one index load per k.
using FissionTileDirect = void (*)(Format f, int64_t K, const void* a, const float* b,
                                   const int64_t* rowoff, float* c, int64_t ldc, int m, int n,
                                   float alpha, float beta, const TileRows* rows, bool scaled);
void fission_tile_direct__avx512(Format, int64_t, const void*, const float*, const int64_t*,
                                 float*, int64_t, int, int, float, float, const TileRows*, bool);

// The pixel-vector direct tile (fp32 strips only): C[i][j] for i < m <= MR rows of the strip a
// (element (i, k) at a[k * MR + i]) and n <= 48 consecutive columns, b(k, j) = b[rowoff[k] + j]:
// rows of A broadcast, 16 columns of B per vector load, C rows stored as computed. The column
// tile's C is a 16 x 16 transpose per half in registers; with a small K (a first conv's 27, a
// 1x1 conv on 16 channels) that store cost as much as the FMAs. Same contract otherwise.
void fission_tile_direct_px__avx512(int64_t K, const float* a, const float* b,
                                    const int64_t* rowoff, float* c, int64_t ldc, int m, int n,
                                    float alpha, float beta, const TileRows* rows);
// The pixel-vector tile over two output rows: columns j < len0 read b0[rowoff[k] + j], the
// others b1[rowoff[k] + j - len0] (the next row's start); C's n columns consecutive, as the
// two rows' outputs are. Rows of 17-24 columns ran one row per chunk in 2 vectors, 53-75%
// full (LeNet's 24-wide conv1: 24 of 32 lanes); two rows make 3 vectors, 71-100% full.
void fission_tile_direct_px2__avx512(int64_t K, const float* a, const float* b0, const float* b1,
                                     int len0, const int64_t* rowoff, float* c, int64_t ldc,
                                     int m, int n, float alpha, float beta,
                                     const TileRows* rows);

// d[m] = s[m] * scale for m0 <= m < m1 and 0 for the other m < wp (one padded row of
// fission_conv's stride-1 copy; s is read only inside [m0, m1)).
void pad_row_f32__avx512(const float* s, float* d, int64_t m0, int64_t m1, int64_t wp,
                         float scale);

// One padded row of fission_conv's stride-2 copy split into its two column phases, straight
// from the source: with t[w] = s[w] * scale for m0 <= w < m1 and 0 for the other w < 2 * wp,
// d0[m] = t[2m], d1[m] = t[2m + 1] (d1 null: skipped), m < wp (s read only inside [m0, m1)).
void pad_deinterleave2_f32__avx512(const float* s, int64_t m0, int64_t m1, int64_t wp,
                                   float scale, float* d0, float* d1);

// Native bf16 with channel pairs (FissionPackedA::conv_channel_pairs, fission_conv): the tile
// of fission_tile__avx512bf16 with K-pair word (kp, j) of B read at b[rowoff[kp] + j] in the
// channel-pair image (word = channel 2cp in the low half, 2cp + 1 in the high half).
void fission_tile_pairs_direct__avx512bf16(int64_t K, const void* a, const uint32_t* b,
                                           const int64_t* rowoff, float* c, int64_t ldc, int m,
                                           int n, float alpha, float beta, const TileRows* rows);
// Direct tiles of 12 columns over two output rows: columns j < len0 (1..11) read b0[rowoff[k] +
// j], the others b1[rowoff[k] + j - len0] (the next row's start); otherwise the contracts of
// fission_tile_direct__avx512 (fp32 strips only) and fission_tile_pairs_direct__avx512bf16.
// Short rows (13 wide: 7 + 6 columns per row) ran the tile half empty.
void fission_tile_direct2_f32__avx512(int64_t K, const float* a, const float* b0, const float* b1,
                                      int len0, const int64_t* rowoff, float* c, int64_t ldc,
                                      int m, float alpha, float beta, const TileRows* rows);
void fission_tile_pairs_direct2__avx512bf16(int64_t K, const void* a, const uint32_t* b0,
                                            const uint32_t* b1, int len0, const int64_t* rowoff,
                                            float* c, int64_t ldc, int m, float alpha, float beta,
                                            const TileRows* rows);
// d[m] = bf16(lo[m]) | bf16(hi[m]) << 16, m < n (nearest even, DAZ, like vcvtne2ps2bf16; hi
// null: high halves zero).
void pair_words__avx512bf16(const float* lo, const float* hi, int64_t n, uint32_t* d);
// One padded row of the channel-pair copy at stride 1, straight from the two channels' source
// rows: d[m] = pair word of (s0[m], s1[m]) * scale for m0 <= m < m1, of zeros for the other
// m < wp (s0 / s1 read only inside [m0, m1); s1 null: high halves zero). Filling two fp32 rows
// with masked stores and reading them back for pair_words was 15% of CaffeNet conv4 in bf16
// at batch 1 (masked stores do not forward to the loads that follow).
void pair_words_pad__avx512bf16(const float* s0, const float* s1, int64_t m0, int64_t m1,
                                int64_t wp, float scale, uint32_t* d);

// B-PANEL BUILDERS FROM AN IMAGE (fission_conv)
//   void build(const float* src, const int64_t* rowoff, int64_t K, const PanelSeg* seg, int nseg,
//              int nq, void* dst);
//   Column j of the panel (0 <= j < nq <= 16) lies in exactly one segment s (seg[s].lane <= j <
//   seg[s].lane + seg[s].len, segments in lane order, covering [0, nq)); its value in row k is
//   src[seg[s].off + rowoff[k] + (j - seg[s].lane)]. Every such address is inside src (the
//   padded, phased image: no bounds checks). dst: the panel as the tile kernel reads it, exactly
//   nq wide: fp32 (k, j) at [k * nq + j] (panel_f32), or native bf16 K-pair words (k/2, j) at
//   [(k / 2) * nq + j], row K (when K is odd) zero, values rounded to nearest even with DAZ like
//   vcvtne2ps2bf16 (panel_pairs).
struct PanelSeg {
  int lane, len;
  int64_t off;
};
using PanelBuild = void (*)(const float* src, const int64_t* rowoff, int64_t K,
                            const PanelSeg* seg, int nseg, int nq, void* dst);
void panel_f32__portable(const float*, const int64_t*, int64_t, const PanelSeg*, int, int, void*);
void panel_f32__avx2(const float*, const int64_t*, int64_t, const PanelSeg*, int, int, void*);
void panel_f32__avx512(const float*, const int64_t*, int64_t, const PanelSeg*, int, int, void*);
void panel_pairs__avx512bf16(const float*, const int64_t*, int64_t, const PanelSeg*, int, int,
                             void*);

// Deft-8 widening constants: bits = (sign-extended code << shift) & mask, value = bits * scale.
struct Deft8Widen {
  int shift;       // 16 + N
  uint32_t mask;   // sign | the 7 code bits at their fp32 place
  float scale;     // 2^(127 - bias)
  float limit;     // 2^(1 + bias): |b| < limit <=> b * scale is finite (and exact)
};
inline Deft8Widen deft8_widen(Format f) {
  const int n = static_cast<int>(f) - static_cast<int>(Format::deft8_e1) + 1;
  const int bias = (1 << (n - 1)) - 1;
  Deft8Widen w;
  w.shift = 16 + n;
  w.mask = 0x80000000u | (0x7Fu << w.shift);
  // 2^(127 - bias) as bits: exponent field 254 - bias (bias <= 63, so always normal).
  const uint32_t bits = static_cast<uint32_t>(254 - bias) << 23;
  __builtin_memcpy(&w.scale, &bits, 4);
  const uint32_t lbits = static_cast<uint32_t>(128 + bias) << 23;
  __builtin_memcpy(&w.limit, &lbits, 4);
  return w;
}

// Writes an accumulated tile t (n columns of MR floats: t[j * mr + p]) to C. Row i of the tile
// lives at p = i, or with even/odd vectors (eo: Deft-16 words split into even and odd rows) at
// p = (i & 1) * (mr / 2) + (i >> 1).
inline void fission_store(const float* t, int mr, bool eo, int m, int n, float alpha, float beta,
                          float* c, int64_t ldc) {
  for (int i = 0; i < m; ++i) {
    const int p = eo ? (i & 1) * (mr / 2) + (i >> 1) : i;
    float* cr = c + i * ldc;
    if (beta == 0.0f)
      for (int j = 0; j < n; ++j) cr[j] = alpha * t[j * mr + p];
    else
      for (int j = 0; j < n; ++j) cr[j] = alpha * t[j * mr + p] + beta * cr[j];
  }
}

}  // namespace deftnn::gemm

namespace deftnn::gemm {
// Peak probes for the roofline (deftnn/precision.h measure_roof): `iters` rounds of 12
// independent FMA chains; returns a value that depends on every result (so nothing is elided).
// FLOPs: iters * 12 * lanes * 2 (fma: lanes 16 on AVX-512, 8 on AVX2; dpbf16: 16 lanes x 2
// products, so iters * 12 * 64).
double peak_fma__avx2(int64_t iters);
double peak_fma__avx512(int64_t iters);
double peak_dpbf16__avx512bf16(int64_t iters);
// Sum of p[0, n) (n a multiple of 64, p 64-byte aligned): the DRAM read probe.
double read_sum__avx512(const float* p, int64_t n);
}  // namespace deftnn::gemm
