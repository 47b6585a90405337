// Small helpers shared by the test files.
#pragma once
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "deftnn/gemm.h"
#include "deftnn/rng.h"
#include "deftnn/tensor.h"

namespace deftnn::test {

// Restores a process-wide setting (read by Get, written by Set) when a test that changes it
// ends, also on a failed assertion.
template <auto Get, auto Set>
class SettingGuard {
 public:
  SettingGuard() : saved_(Get()) {}
  ~SettingGuard() { Set(saved_); }
  SettingGuard(const SettingGuard&) = delete;
  SettingGuard& operator=(const SettingGuard&) = delete;

 private:
  decltype(Get()) saved_;
};

// The active GEMM ISA; the Winograd policy (deftnn/gemm.h).
using IsaGuard = SettingGuard<active_isa, set_active_isa>;
using WinogradPolicyGuard = SettingGuard<winograd_policy, set_winograd_policy>;

// A tensor of the given shape filled with standard normal values from a seeded generator.
inline Tensor random_tensor(Shape s, uint64_t seed) {
  Tensor t(std::move(s));
  Rng r(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(r.normal());
  return t;
}

#ifdef DEFTNN_CLI_PATH
// Runs the deftnn command with `args` (shell syntax), stdout and stderr into *output (when
// given), with `env` (shell assignments, e.g. "DEFTNN_VERBOSE=1 ") before the command; returns
// its exit status (-1: it did not exit normally, e.g. a crash).
inline int run_cli(const std::string& args, std::string* output = nullptr,
                   const std::string& env = "") {
  const std::string cmd = env + std::string(DEFTNN_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  if (output) *output = out;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
#endif

}  // namespace deftnn::test
