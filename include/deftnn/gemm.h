// deftnn: fp32 GEMM (BLIS-style: packing, per-ISA micro-kernel, portable loops) and ISA dispatch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace deftnn {

// Instruction-set paths, lowest first. One binary carries all of them; the best one this CPU
// supports is chosen at start-up. DEFTNN_ISA=portable|avx2|avx512|avx512_bf16 forces a lower one.
enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3 };

const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);   // throws Error on an unknown name
Isa detected_isa();                           // what the CPU supports (CPUID + OS xsave state)
bool cpu_has_avx512vbmi();                    // AVX512_VBMI (vpermi2b) beside detected_isa()
Isa active_isa();                             // what GEMM uses now (detected, capped by DEFTNN_ISA)
// Forces a path (tests, benchmarks). Throws Error if the CPU does not support it.
void set_active_isa(Isa isa);
// The ISA GEMM should use given DEFTNN_ISA's value (nullptr or "" when unset) and the detected
// ISA. The variable only caps: an unknown name, or a path above `detected`, falls back to
// `detected` with a warning in *why (which also says what was chosen; may be nullptr).
// active_isa() applies this once at first use and prints *why to stderr when it is a warning.
Isa resolve_isa(const char* env_value, Isa detected, std::string* why);
// Name of the micro-kernel / GEMV kernel the active ISA uses (for logs and benchmarks).
const char* active_gemm_kernel();

// Winograd F(2x2, 3x3) for dense fp32 3x3 stride-1 convolutions at inference of a frozen model
// (src/gemm/winograd.h): `automatic` (the default) where the ISA has vectorised transforms and
// the layer has enough output tiles to pay for them; `off` (the direct kernels: what synapse
// elimination and the reduced formats are measured against, kernel for kernel); `on` (every
// eligible layer, on any ISA: tests). DEFTNN_WINOGRAD=auto|off|on sets the starting policy; a bad
// value is an error naming it. Not thread-safe against running inference; set it before.
enum class WinogradPolicy : int { automatic = 0, off = 1, on = 2 };
WinogradPolicy winograd_policy();
void set_winograd_policy(WinogradPolicy p);
WinogradPolicy winograd_policy_from_name(const std::string& name);   // throws Error naming it
const char* winograd_policy_name(WinogradPolicy p);

// Row-major C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C.
// op(A) = A (lda >= K) or A^T (A stored K x M, lda >= M); same for B (ldb >= N, or ldb >= K when
// transposed). beta == 0 means C is write-only (NaNs in C are not propagated). Multi-threaded
// with OpenMP over the calling thread's team size (omp_get_max_threads()).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// A left operand packed once (layer weights are constant at inference): op(A) (M x K) stored
// in the micro-kernel's layout for the ISA active when it was built (its MR and KC blocking),
// so sgemm_packed skips packing A on every call. Immutable after construction; copies share
// the storage.
class PackedA {
 public:
  PackedA() = default;
  PackedA(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda);
  int64_t rows() const { return m_; }
  int64_t depth() const { return k_; }
  Isa isa() const { return isa_; }
  bool empty() const { return data_ == nullptr; }
  // Layout: for each KC block p (depth kc_p), ceil(M / MR) strips of MR x kc_p, at
  // data() + p * KC * m_pad + strip * MR * kc_p (see src/gemm/ukernel.h for a strip's layout).
  const float* data() const { return data_.get(); }
  int64_t kc() const { return kc_; }
  int64_t m_pad() const { return m_pad_; }

 private:
  Isa isa_ = Isa::portable;
  int64_t m_ = 0, k_ = 0, kc_ = 0, m_pad_ = 0;
  std::shared_ptr<float> data_;
};

// C[M x N] = alpha * A * op(B) + beta * C with A pre-packed (M = a.rows(), K = a.depth()).
// Same semantics and threading as sgemm; runs the kernels of a.isa().
void sgemm_packed(const PackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                  int64_t ldb, float beta, float* C, int64_t ldc);

// Synapse vector elimination's GEMM (paper §4.1.1): the same products with op(A)'s columns and
// op(B)'s rows (the K dimension) picked from wider stored matrices by an index of K entries
// (null: the identity): op(A)(i, k) = A(i, akidx[k]) (A^T(i, akidx[k]) when transposed) and
// op(B)(k, j) = B(bkidx[k], j), the leading dimensions those of the stored matrices. The gather
// happens in the packing step that builds the GEMM operand, not as a separate pass over the
// input. The caller keeps every index inside its stored matrix.
void sgemm_gather(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const int64_t* akidx, const float* B, int64_t ldb,
                  const int64_t* bkidx, float beta, float* C, int64_t ldc);
void sgemm_packed_gather(const PackedA& a, bool trans_b, int64_t N, float alpha, const float* B,
                         int64_t ldb, const int64_t* bkidx, float beta, float* C, int64_t ldc);

// The naive reference: triple loop in double accumulation. Tests compare sgemm against it.
void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

}  // namespace deftnn
