// Small inline SIMD helpers shared by the per-ISA kernel files (gemv, spmm, formats). Each part is
// compiled only in translation units built with that ISA's flags (*_avx2.cpp, *_avx512.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace deftnn::simd {

// Software prefetch of a kernel's operand stream, kPrefetchAheadBytes ahead: the packed A
// strip that GEMV tiles, fission tiles and sgemm micro-kernels read k after k. Zen 5's hardware
// prefetchers leave such streams short of DRAM bandwidth. In the GEMV tiles (fc at batch 1,
// reduced formats) fc6 Deft-8 went 0.60 -> 0.49 ms (one weight copy) and 0.77 -> 0.67 ms (four
// copies cycled, cold), still short of the roof cold; fp32 GEMV does not gain (its stream is
// already at the roof) and is not prefetched there. The GEMV tiles now share this distance among
// their streams (split_steps). The other kernels quote their own figures.
// A prefetch past the end of a strip reads the next strip (or nothing: prefetches never fault).
inline constexpr int64_t kPrefetchAheadBytes = 8192;
// Prefetch the lines holding the `bytes` bytes (one line per 64, at least one) that lie
// kPrefetchAheadBytes past p.
template <int bytes>
inline void prefetch_ahead(const void* p) {
  const char* q = static_cast<const char*>(p) + kPrefetchAheadBytes;
#pragma GCC unroll 8
  for (int o = 0; o < bytes; o += 64) _mm_prefetch(q + o, _MM_HINT_T0);
}

// The first k steps of a tile with the lines [p, e) of another operand prefetched into L2 (T1)
// as it runs, one line per k step, 64 at a time, until the range is done (p advances): step(0, k)
// for k < the returned count; the caller runs the rest.
template <class Step>
__attribute__((always_inline)) inline int64_t side_prefetched_steps(const char*& p,
                                                                    const char* e, int64_t K,
                                                                    Step&& step) {
  int64_t k = 0;
  while (k + 64 <= K && p < e) {
#pragma GCC unroll 8
    for (int l = 0; l < 64; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T1);
    p += 64 * 64;
    for (const int64_t end = k + 64; k < end; ++k) step(0, k);
  }
  return k;
}

// A tile's k loop unrolled by U: step(u, k + u) for u < U while k + U <= K. Returns the first k
// not run; the caller runs the tail.
template <int U, class Step>
__attribute__((always_inline)) inline int64_t unrolled_steps(int64_t K, Step&& step) {
  int64_t k = 0;
  for (; k + U <= K; k += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) step(u, k + u);
  }
  return k;
}

// A GEMV tile's k loop (NRT <= 2: fc at batch 1 and 2) as U streams: step(u, u * S + k) for
// k < S = K / U, so the strip is read at U places at once, each prefetched ahead when pf. A
// stream's prefetch that would run into the next segment (already being read) goes to the same
// place in the next strip instead, the one this thread reads next (the driver gives a GEMV's
// strips to its threads in contiguous ranges; strips lie K * bytes_per_k bytes apart, rounded
// up to 64). Returns U * S, the first k not run; the caller runs the tail with u = 0.
// Against one stream (U consecutive k per step), alternated in one process on CaffeNet batch 1
// (2 threads, Zen 5): fc6 bf16 1.45 -> 1.25 ms, Deft-8 (bf16_dot) 0.83 -> 0.74 ms, Deft-8 (fp32
// fission) 0.96 -> 0.79 ms, fp32 even; two streams did as well as four, eight and sixteen worse
// than one. Prefetching into the next strip, with the strips split statically: Deft-8 fc6 0.70
// -> 0.60 ms, fc7 0.40 -> 0.30 ms (each alone: no gain or less). Each stream prefetches
// kPrefetchAheadBytes / U ahead, so that the strip has as many bytes in flight as one stream
// had: per stream 512 / 1K / 2K / 8K, alternated (fc6 ms): bf16 1.24 / 1.08 / 1.21 / 1.22,
// Deft-8 0.67 / 0.58 / 0.53 / 0.59, AVX2 Deft-16Q 1.29 / 1.17 / 1.10 / 1.24.
template <int U, int bytes_per_k, class Step>
__attribute__((always_inline)) inline int64_t split_steps(const char* base, int64_t K, bool pf,
                                                          Step&& step) {
  constexpr int64_t D = kPrefetchAheadBytes / U;   // per stream: the same bytes ahead in all
  const int64_t S = K / U;
  const int64_t seg = S * bytes_per_k, jump = (K * bytes_per_k + 63) / 64 * 64 - seg;
  for (int64_t k = 0; k < S; ++k) {
    if (pf && (k * bytes_per_k) % 64 < bytes_per_k) {   // once per line of each stream
      const int64_t o = k * bytes_per_k + D;
      const char* q = base + o + (o >= seg ? jump : 0);
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
        for (int b = 0; b < bytes_per_k; b += 64) _mm_prefetch(q + u * seg + b, _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) step(u, u * S + k);
  }
  return U * S;
}

#if defined(__AVX2__)
// Horizontal sum of the 8 lanes.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

#if defined(__AVX512F__)
// Mask of the first min(left, 16) lanes (0 when left <= 0).
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF)
         : left <= 0 ? static_cast<__mmask16>(0)
                     : static_cast<__mmask16>((1u << left) - 1u);
}

// Lanes l of a 16-lane vector with lo <= l < hi (none when hi <= lo; clipped to [0, 16)): the
// mask of the floats of a 16-float load that fall inside a range, e.g. the columns [0, W) of
// a plane for a load from column c0: lanes_in(-c0, W - c0).
inline __mmask16 lanes_in(int64_t lo, int64_t hi) {
  lo = lo > 0 ? lo : 0;
  hi = hi < 16 ? hi : 16;
  return hi > lo ? static_cast<__mmask16>(tail_mask(hi - lo) << lo) : static_cast<__mmask16>(0);
}

// Horizontal sum of the 16 lanes, without _mm512_reduce_add_ps (GCC 12 warns inside it under
// -Werror).
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  __m128 s = _mm512_castps512_ps128(v);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace deftnn::simd
