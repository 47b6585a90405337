// deftnn: CPU feature detection (CPUID + XGETBV) and the choice of the active GEMM ISA.
//
// Policy: the best ISA the CPU and the OS support is used, unless DEFTNN_ISA caps it
// (portable | avx2 | avx512 | avx512_bf16). An unknown value or a value above what the CPU
// has does not abort (GEMM may run deep inside a layer, even inside an OpenMP region): it falls
// back to the detected ISA and prints a one-line warning to stderr. DEFTNN_VERBOSE=1 prints,
// once, which ISA and kernel were chosen and why. set_active_isa() overrides (tests, benches).
#include <cpuid.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "gemm/ukernel.h"

namespace deftnn {
namespace {

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Isa detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::portable;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(osxsave && avx && fma)) return Isa::portable;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state saved by the OS
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm) return Isa::portable;
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::portable;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                      (b & (1u << 31));   // F, DQ, BW, VL
  if (!avx2) return Isa::portable;
  if (!(avx512 && os_zmm)) return Isa::avx2;
  __cpuid_count(7, 1, a, b, c, d);
  const bool bf16 = a & (1u << 5);
  return bf16 ? Isa::avx512_bf16 : Isa::avx512;
}

bool detect_vbmi() {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (c & (1u << 1)) != 0;   // AVX512_VBMI
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

void init_active() {
  std::call_once(g_init, [] {
    const Isa det = detected_isa();
    std::string why;
    const Isa isa = resolve_isa(std::getenv("DEFTNN_ISA"), det, &why);
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(isa));
    const char* verbose = std::getenv("DEFTNN_VERBOSE");
    const bool warn = why.rfind("warning", 0) == 0;
    if (warn || (verbose && *verbose && std::string(verbose) != "0")) {
      const auto& cfg = gemm::gemm_config(isa);
      std::fprintf(stderr, "deftnn: gemm isa=%s ukernel=%s (MRxNR %dx%d, KC %lld MC %lld NC %lld) gemv=%s: %s\n",
                   isa_name(isa), cfg.ukernel_name, cfg.mr, cfg.nr,
                   static_cast<long long>(cfg.kc), static_cast<long long>(cfg.mc),
                   static_cast<long long>(cfg.nc), cfg.gemv_name, why.c_str());
    }
  });
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable: return "portable";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
  }
  return "?";
}

Isa isa_from_name(const std::string& n) {
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16})
    if (n == isa_name(i)) return i;
  throw Error("unknown ISA '" + n + "' (expected portable, avx2, avx512 or avx512_bf16)");
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa resolve_isa(const char* env_value, Isa detected, std::string* why) {
  std::string msg;
  Isa isa = detected;
  if (env_value == nullptr || *env_value == '\0') {
    msg = std::string("best detected ISA (") + isa_name(detected) + "), DEFTNN_ISA unset";
  } else {
    try {
      const Isa want = isa_from_name(env_value);
      if (static_cast<int>(want) > static_cast<int>(detected)) {
        msg = std::string("warning: DEFTNN_ISA=") + env_value + " is not supported by this CPU/OS (detected " +
              isa_name(detected) + "); using " + isa_name(detected);
      } else {
        isa = want;
        msg = std::string("DEFTNN_ISA=") + env_value + " caps the detected " + isa_name(detected);
      }
    } catch (const Error& e) {
      msg = std::string("warning: DEFTNN_ISA: ") + e.what() + "; using detected " + isa_name(detected);
    }
  }
  if (why) *why = msg;
  return isa;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    init_active();
    v = g_active.load(std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  check(static_cast<int>(isa) <= static_cast<int>(detected_isa()),
        std::string("set_active_isa: ") + isa_name(isa) + " is not supported by this CPU (detected " +
            isa_name(detected_isa()) + ")");
  init_active();   // consume DEFTNN_ISA / verbose printing first so it cannot override later
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* active_gemm_kernel() { return gemm::gemm_config(active_isa()).ukernel_name; }

bool cpu_has_avx512vbmi() {
  static const bool v = detected_isa() >= Isa::avx512 && detect_vbmi();
  return v;
}

}  // namespace deftnn
