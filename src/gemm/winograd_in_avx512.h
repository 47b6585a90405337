// The AVX-512 Winograd input transform of one channel for a group of up to 16 tiles (winograd.h),
// shared by the fp32 transform (winograd_avx512.cpp) and the bf16 one (winograd_avx512bf16.cpp),
// which differ only in what they store. Include only from files compiled with AVX-512 (the
// anonymous namespace keeps each file's copy its own).
#pragma once
#include <immintrin.h>

#include "gemm/simd_util.h"
#include "gemm/winograd.h"

namespace deftnn::gemm {
namespace {

// Lanes e of the 16 floats from column c0 on that lie inside [0, W).
inline __mmask16 cols_in(int64_t c0, int64_t W) { return simd::lanes_in(-c0, W - c0); }

// Lane l reads columns 2 tx - pad_w .. + 3 of its tile: d0, d1 are the even / odd elements of
// 32 loaded from element 0 (A | B), d2, d3 those of 32 loaded two columns on (A2 | B2). Part p
// owns elements [2a, 2b) of both pairs and loads them from its own rows, at an offset that puts
// its first tile at element 2a; elements outside the plane (or of rows outside it) stay 0.
class WinoInReader {
 public:
  explicit WinoInReader(const WinoInSeg& s) : s_(s), np_(s.nparts), HW_(s.H * s.W) {
    alignas(64) static const int32_t kEven[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    alignas(64) static const int32_t kOdd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    ie_ = _mm512_load_si512(kEven);
    io_ = _mm512_load_si512(kOdd);
    for (int q = 0; q < np_; ++q) {
      const WinoPart& p = s.parts[q];
      const int64_t cb = 2 * p.tx0 - s.pad_w - 2 * p.a;   // column of element 0
      base_[q] = s.x + p.n * s.x_image_stride + cb;
      row0_[q] = 2 * p.ty - s.pad_h;
      const int64_t e0 = 2 * p.a, e1 = 2 * p.b;
      m_[q][0] = simd::lanes_in(e0, e1) & cols_in(cb, s.W);
      m_[q][1] = simd::lanes_in(e0 - 16, e1 - 16) & cols_in(cb + 16, s.W);
      m_[q][2] = simd::lanes_in(e0, e1) & cols_in(cb + 2, s.W);
      m_[q][3] = simd::lanes_in(e0 - 16, e1 - 16) & cols_in(cb + 18, s.W);
    }
  }
  // v[xi] = (B^T d B)_xi of channel c, lane l = tile j + l of the group.
  inline void channel(int64_t c, __m512 v[16]) const {
    const __m512 zero = _mm512_setzero_ps();
    __m512 t[4][4];   // row k of the tiles times B, lane = tile
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512 a = zero, b = zero, a2 = zero, b2 = zero;
      for (int q = 0; q < np_; ++q) {
        const int64_t r = row0_[q] + k;
        if (r < 0 || r >= s_.H) continue;
        const float* row = base_[q] + c * HW_ + r * s_.W;   // masked-off lanes are never read
        a = _mm512_mask_loadu_ps(a, m_[q][0], row);
        b = _mm512_mask_loadu_ps(b, m_[q][1], row + 16);
        a2 = _mm512_mask_loadu_ps(a2, m_[q][2], row + 2);
        b2 = _mm512_mask_loadu_ps(b2, m_[q][3], row + 18);
      }
      const __m512 d0 = _mm512_permutex2var_ps(a, ie_, b), d1 = _mm512_permutex2var_ps(a, io_, b);
      const __m512 d2 = _mm512_permutex2var_ps(a2, ie_, b2);
      const __m512 d3 = _mm512_permutex2var_ps(a2, io_, b2);
      t[k][0] = _mm512_sub_ps(d0, d2);
      t[k][1] = _mm512_add_ps(d1, d2);
      t[k][2] = _mm512_sub_ps(d2, d1);
      t[k][3] = _mm512_sub_ps(d1, d3);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {   // B^T (d B), column q
      v[0 + q] = _mm512_sub_ps(t[0][q], t[2][q]);
      v[4 + q] = _mm512_add_ps(t[1][q], t[2][q]);
      v[8 + q] = _mm512_sub_ps(t[2][q], t[1][q]);
      v[12 + q] = _mm512_sub_ps(t[1][q], t[3][q]);
    }
  }

 private:
  static constexpr int kMaxParts = 16;   // a part has at least one of the 16 lanes
  const WinoInSeg& s_;
  int np_;
  int64_t HW_;
  __m512i ie_, io_;
  const float* base_[kMaxParts];   // image + column offset; the row and channel added per load
  int64_t row0_[kMaxParts];        // the part's first input row (may be outside the plane)
  __mmask16 m_[kMaxParts][4];
};

}  // namespace
}  // namespace deftnn::gemm
