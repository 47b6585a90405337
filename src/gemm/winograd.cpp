// Winograd F(2x2, 3x3) convolution: weight transform, driver and the portable transforms (see
// winograd.h for the algorithm and the layouts).
#include "gemm/winograd.h"

#include <omp.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/tensor.h"
#include "gemm/buffer.h"
#include "gemm/pack.h"
#include "gemm/policy_names.h"
#include "gemm/ukernel.h"

namespace deftnn::gemm {

WinogradWeights::WinogradWeights(Isa isa, const float* w, int64_t O, int64_t C, bool bf16)
    : isa_(isa), O_(O), C_(C) {
  check(O > 0 && C > 0, "WinogradWeights: empty convolution");
  check(!bf16 || isa == Isa::avx512_bf16, "WinogradWeights: bf16 needs the avx512_bf16 ISA");
  mr_ = gemm_config(isa).mr;
  xi_stride_ = strips() * mr_ * C_;
  // U_xi [O x C] row-major, then packed into MR strips.
  std::vector<float> u(static_cast<size_t>(16 * O * C));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (o * C + c) * 9;
      float t[4][3];   // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[j];
        t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        t[3][j] = g[6 + j];
      }
      for (int i = 0; i < 4; ++i) {   // (G g) G^T
        const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                            0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) u[static_cast<size_t>(((i * 4 + j) * O + o) * C + c)] = r[j];
      }
    }
  if (bf16) {   // K-pair words rounded to nearest even, as vcvtne2ps2bf16 rounds
    for (int xi = 0; xi < 16; ++xi)
      pairs_.emplace_back(u.data() + static_cast<size_t>(xi) * O * C, O, C,
                          Rounding::nearest_even);
    return;
  }
  data_ = aligned_alloc_floats(16 * xi_stride_);
  for (int xi = 0; xi < 16; ++xi)
    pack_a(false, O, C, u.data() + static_cast<size_t>(xi) * O * C, C, mr_,
           data_ + xi * xi_stride_);
}

WinogradWeights::WinogradWeights(WinogradWeights&& o) noexcept { *this = std::move(o); }

WinogradWeights& WinogradWeights::operator=(WinogradWeights&& o) noexcept {
  if (this != &o) {
    aligned_free(data_);
    isa_ = o.isa_;
    O_ = o.O_;
    C_ = o.C_;
    xi_stride_ = o.xi_stride_;
    mr_ = o.mr_;
    data_ = std::exchange(o.data_, nullptr);
    pairs_ = std::move(o.pairs_);
  }
  return *this;
}

WinogradWeights::~WinogradWeights() { aligned_free(data_); }

namespace {
WinogradPolicy& policy() {
  return process_policy<WinogradPolicy>("DEFTNN_WINOGRAD", "DEFTNN_WINOGRAD / --winograd");
}
}  // namespace

bool winograd_fast(Isa isa) { return isa == Isa::avx512 || isa == Isa::avx512_bf16; }

// Where automatic Winograd pays (in-network, alternated against the direct kernels, 2 threads,
// Zen 5): from 64 input channels with at least 64 output tiles of 2 x 2 (ResNet-18's 56x56 and
// 28x28 3x3 convs 0.65-0.69 -> 0.45-0.46 ms), or from 128 channels with 32 tiles (its 14x14
// ones 0.69 -> 0.53-0.55 ms). Below, the transforms and the 16/9 larger weights cost what the
// multiplies save: SqueezeNet's 13x13 expand convs (48 and 64 channels, 49 tiles) ran 6-9%
// slower, its 16- and 32-channel ones even to 10% slower; ResNet-18's 7x7 ones (16 tiles, 16 MB
// of transformed weights per layer from DRAM) 1.4-1.5x slower. With many tiles (batch 16) the
// small-channel ones pay again: the direct kernels' output rows stream to DRAM, Winograd's blocks
// stay in L2 (bench_winograd, hot: SqueezeNet's 16- and 32-channel expand convs 0.69x); from 32
// channels 512 tiles are enough (SqueezeNet's 48-channel 13x13 expand convs at batch 16, 784
// tiles: 1.28 -> 0.97 ms; at batch 1, 49 tiles, still 6-9% slower; its 32-channel 27x27 ones at
// batch 1, 196 tiles, within noise of even).
// Measured again after the direct convs shared their tails and the sgemm units got finer
// (SqueezeNet 1.1 at batch 1, in the model, every 3x3 conv on Winograd against auto, alternated,
// 3 runs): the 32-channel 27x27 expand convs (196 tiles) 0.84-0.87x, the 64-channel 13x13 ones
// (49 tiles) 0.92-0.97x, the 48-channel 13x13 ones 1.01-1.09x, the 16-channel 55x55 ones
// 0.93-1.05x. So from 64 channels 32 tiles are enough, from 32 channels 128 (SqueezeNet 2.3%
// faster end to end).

//
// bf16 (against the native bf16 direct kernels, which do twice the fp32 products per cycle, so
// the transforms weigh twice as much): in-model, Winograd on against off, alternated, 2 threads.
// Wins: CaffeNet's conv3-5 at batch 32 (192-256 channels, 1568 tiles) 0.67-0.79x, its conv3 at
// batch 1 (256 -> 384, 49 tiles) 0.93x; VGG-11 at batch 1 0.59-0.79x on every 3x3 conv (64 ->
// 128 at 3136 tiles down to 512 -> 512 at 49); ResNet-18 at batch 16 0.67-0.82x from 128
// channels (3136 tiles and fewer); SqueezeNet at batch 16 0.64-0.98x (16 -> 64 at 12544 tiles,
// 48 / 64 -> 192 / 256 at 784). Losses: few output channels or tiles with few input channels -
// ResNet-18 at batch 1 on 64 -> 64 (784 tiles) and 128 -> 128 (196) 1.06-1.2x, SqueezeNet at
// batch 1 on 16 -> 64 (784) 1.02-1.18x and 48 / 64 -> 192 / 256 (49) 1.28-1.48x, CaffeNet's
// conv4 / conv5 at batch 1 (192 -> 192 / 128, 49) 1.06x. Even: 256 -> 256 at 49 tiles, 512 ->
// 512 at 16, 64 -> 64 at 12544.
bool winograd_pays(Isa isa, int64_t C, int64_t O, int64_t tiles, bool bf16) {
  if (!winograd_fast(isa) || O < 16 || C < 16) return false;
  if (bf16)
    return tiles >= 2048 || (tiles >= 512 && O >= 128) || (tiles >= 128 && C >= 256) ||
           (tiles >= 32 && C >= 256 && O >= 384);
  return (C >= 64 && tiles >= 32) || (C >= 32 && tiles >= 128) || tiles >= 2048;
}

// ---- portable transforms (the reference of the vectorised ones) -----------------------------

void wino_in__portable(const WinoInSeg& s) {
  for (int pi = 0; pi < s.nparts; ++pi) {
    const WinoPart& p = s.parts[pi];
    const float* img = s.x + p.n * s.x_image_stride;
    for (int l = p.a; l < p.b; ++l) {
      const int64_t tx = p.tx0 + (l - p.a), slot = s.j + l;
      float* v = s.v + (slot / s.nr) * s.C * s.nr + slot % s.nr;
      for (int64_t c = 0; c < s.C; ++c) {
        const float* plane = img + c * s.H * s.W;
        float d[4][4];
        for (int k = 0; k < 4; ++k) {
          const int64_t r = 2 * p.ty - s.pad_h + k;
          for (int q = 0; q < 4; ++q) {
            const int64_t col = 2 * tx - s.pad_w + q;
            d[k][q] = r >= 0 && r < s.H && col >= 0 && col < s.W ? plane[r * s.W + col] : 0.0f;
          }
        }
        float t[4][4];   // B^T d
        for (int q = 0; q < 4; ++q) {
          t[0][q] = d[0][q] - d[2][q];
          t[1][q] = d[1][q] + d[2][q];
          t[2][q] = d[2][q] - d[1][q];
          t[3][q] = d[1][q] - d[3][q];
        }
        for (int k = 0; k < 4; ++k) {   // (B^T d) B
          const float u[4] = {t[k][0] - t[k][2], t[k][1] + t[k][2], t[k][2] - t[k][1],
                              t[k][1] - t[k][3]};
          for (int q = 0; q < 4; ++q) v[(k * 4 + q) * s.xi_stride + c * s.nr] = u[q];
        }
      }
    }
  }
}

void wino_out__portable(const WinoOutSeg& s) {
  const int64_t plane = s.OH * s.OW;
  for (int pi = 0; pi < s.nparts; ++pi) {
    const WinoPart& p = s.parts[pi];
    for (int i = 0; i < s.m; ++i)
      for (int l = p.a; l < p.b; ++l) {
        const int64_t tx = p.tx0 + (l - p.a);
        float m[16];
        for (int xi = 0; xi < 16; ++xi) m[xi] = s.mbuf[(xi * s.mr + i) * s.ldm + s.j + l];
        float t[2][4];   // A^T m
        for (int q = 0; q < 4; ++q) {
          t[0][q] = m[q] + m[4 + q] + m[8 + q];
          t[1][q] = m[4 + q] - m[8 + q] - m[12 + q];
        }
        for (int iy = 0; iy < 2; ++iy) {
          const int64_t row = 2 * p.ty + iy;
          if (row >= s.OH) break;
          const float yv[2] = {t[iy][0] + t[iy][1] + t[iy][2], t[iy][1] - t[iy][2] - t[iy][3]};
          for (int ix = 0; ix < 2; ++ix) {
            const int64_t col = 2 * tx + ix;
            if (col >= s.OW) break;
            const int64_t at = i * plane + row * s.OW + col;
            float v = yv[ix];
            if (s.bias) v += s.bias[i];
            if (s.res) v += s.res[p.n * s.res_image_stride + at];
            if (s.relu) v = v > 0.0f ? v : 0.0f * v;
            s.y[p.n * s.y_image_stride + at] = v;
          }
        }
      }
  }
}

// ---- driver ----------------------------------------------------------------------------------

namespace {

thread_local Buffer t_v;   // a thread's transformed input block (packed B panels, 16 of them)
thread_local Buffer t_m;   // a thread's GEMM output for one strip (16 x MR x block)

// A group of up to 16 consecutive tiles (one per lane) and its parts.
struct Group {
  int64_t j;   // first tile, counted from the block's start
  int len, part0, nparts;
};

}  // namespace

void winograd_conv3x3(const WinogradWeights& w, const WinogradShape& s, const float* x, float* y,
                      const WinogradEpilogue& epi) {
  check(!w.empty(), "winograd_conv3x3: no weights");
  // (Any OH, OW: taps outside the plane read zeros, whatever the bottom / right padding.)
  check(s.OH >= 1 && s.OW >= 1 && s.H >= 1 && s.W >= 1 && s.pad_h >= 0 && s.pad_w >= 0,
        "winograd_conv3x3: inconsistent shape");
  const Isa isa = w.isa();
  const GemmConfig& cfg = gemm_config(isa);
  const int mr = w.mr(), nr = cfg.nr;
  check(!w.bf16() || (mr == 12 && nr == 32), "winograd_conv3x3: bf16 weights of another layout");
  const int64_t O = w.out_channels(), C = w.in_channels(), S = w.strips();
  const int64_t th = (s.OH + 1) / 2, tw = (s.OW + 1) / 2, per_image = th * tw;
  const int64_t T = s.images * per_image;
  const bool fast = winograd_fast(isa), pairs = w.bf16();
  void (*in_seg)(const WinoInSeg&) =
      pairs ? wino_in__avx512bf16 : fast ? wino_in__avx512 : wino_in__portable;
  void (*out_seg)(const WinoOutSeg&) = fast ? wino_out__avx512 : wino_out__portable;
  const double flops = 2.0 * 16 * O * C * static_cast<double>(T);
  const int nt = team_size(flops);
  // 32-bit elements per column of a transformed input matrix: C floats, or ceil(C / 2) K-pair
  // words in bf16.
  const int64_t depth = pairs ? w.depth_pairs() : C;
  // Tiles per block: the block's 16 transformed input matrices (16 * depth * NB elements) within
  // ~256 KiB of L2, the strip's GEMM output (16 * MR * NB) within ~96 KiB, at least one panel.
  int64_t NB = std::clamp<int64_t>((int64_t{65536} / (16 * depth)) / nr * nr, nr, 128);
  int64_t nblocks = (T + NB - 1) / NB;
  // Few blocks: equal ones, a multiple of the team (4 blocks of 256, 256, 256 and 16 tiles
  // left one of two threads waiting a third of the time).
  if (nblocks < 4 * nt) {
    nblocks = (nblocks + nt - 1) / nt * nt;
    NB = (T + nblocks - 1) / nblocks;
    nblocks = (T + NB - 1) / NB;
  }
  // Fewer blocks than two per thread (a small image): the strips of a block are split between
  // threads too, each transforming the block's input itself.
  const int64_t G = nblocks >= 2 * nt ? 1 : std::min<int64_t>(S, (2 * nt + nblocks - 1) / nblocks);
  const int64_t items = nblocks * G;
  const int64_t plane = s.OH * s.OW;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t team = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t NBp = (NB + nr - 1) / nr * nr;   // whole panels
    float* V = t_v.get(16 * depth * NBp);
    float* M = t_m.get(16 * mr * NB);
    const int64_t xs = NBp * depth;   // elements between the 16 input matrices of a block
    std::vector<Group> groups;
    std::vector<WinoPart> parts;
    int64_t cached = -1;
    auto item = [&](int64_t it) {
      const int64_t b = it / G, g = it % G;
      const int64_t b0 = b * NB, b1 = std::min(T, b0 + NB);
      if (b != cached) {
        groups.clear();
        parts.clear();
        for (int64_t t0 = b0; t0 < b1; t0 += 16) {
          const int len = static_cast<int>(std::min<int64_t>(16, b1 - t0));
          Group q{t0 - b0, len, static_cast<int>(parts.size()), 0};
          for (int l = 0; l < len;) {   // parts: runs within one tile row
            const int64_t t = t0 + l, n = t / per_image, r = t % per_image;
            const int64_t ty = r / tw, tx = r % tw;
            const int e = static_cast<int>(std::min<int64_t>(len, l + (tw - tx)));
            parts.push_back({n, ty, tx, l, e});
            l = e;
          }
          q.nparts = static_cast<int>(parts.size()) - q.part0;
          groups.push_back(q);
        }
        for (const Group& q : groups)
          in_seg({x, s.x_image_stride, C, s.H, s.W, s.pad_h, s.pad_w, parts.data() + q.part0,
                  q.nparts, q.len, V, xs, nr, q.j});
        cached = b;
      }
      const int64_t cols = b1 - b0, panels = (cols + nr - 1) / nr;
      for (int64_t st = S * g / G; st < S * (g + 1) / G; ++st) {
        const int m = static_cast<int>(std::min<int64_t>(mr, O - st * mr));
        for (int xi = 0; xi < 16; ++xi)
          for (int64_t p = 0; p < panels; ++p) {
            const int n = static_cast<int>(std::min<int64_t>(nr, cols - p * nr));
            float* mp = M + xi * mr * NB + p * nr;
            if (pairs)
              sbgemm_pairs_12x32__avx512bf16(depth, w.strip_pairs(xi, st),
                                          reinterpret_cast<const uint32_t*>(V) + xi * xs +
                                              p * depth * nr,
                                          mp, NB, m, n);
            else
              cfg.ukernel(C, w.strip(xi, st), V + xi * xs + p * C * nr, mp, NB, m, n, 1.0f, 0.0f);
          }
        const int64_t o0 = st * mr;
        for (const Group& q : groups)
          out_seg({M, NB, mr, m, q.j, q.len, parts.data() + q.part0, q.nparts, s.OH, s.OW,
                   y + o0 * plane, s.y_image_stride, epi.res ? epi.res + o0 * plane : nullptr,
                   epi.res_image_stride, epi.bias ? epi.bias + o0 : nullptr, epi.relu});
      }
    };
    if (G == 1) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; ++it) item(it);
    } else {
      for (int64_t it = items * tid / team; it < items * (tid + 1) / team; ++it) item(it);
    }
  }
}

}  // namespace deftnn::gemm

namespace deftnn {

WinogradPolicy winograd_policy() { return gemm::policy(); }
void set_winograd_policy(WinogradPolicy p) { gemm::policy() = p; }

WinogradPolicy winograd_policy_from_name(const std::string& name) {
  return gemm::policy_from_name<WinogradPolicy>(name, "DEFTNN_WINOGRAD / --winograd");
}

const char* winograd_policy_name(WinogradPolicy p) { return gemm::policy_name(p, "auto"); }

}  // namespace deftnn
