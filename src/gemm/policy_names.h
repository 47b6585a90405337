// The engine's auto / off / on kernel policies (WinogradPolicy, SparsePolicy: enums with the
// members automatic, off, on): the process-wide setting read from its environment variable, and
// the names parsed from that variable or a flag and printed, in one place.
#pragma once
#include <cstdlib>
#include <string>

#include "deftnn/error.h"

namespace deftnn::gemm {

// `where` names the variable and flag in the error ("DEFTNN_SPARSE / --sparse").
template <class Policy>
Policy policy_from_name(const std::string& name, const char* where) {
  if (name == "auto") return Policy::automatic;
  if (name == "off") return Policy::off;
  if (name == "on") return Policy::on;
  throw Error(std::string(where) + ": unknown policy '" + name + "' (expected auto, off or on)");
}

// `unknown`: the name of a value outside the enum.
template <class Policy>
const char* policy_name(Policy p, const char* unknown) {
  switch (p) {
    case Policy::automatic: return "auto";
    case Policy::off: return "off";
    case Policy::on: return "on";
  }
  return unknown;
}

// The process-wide setting of Policy: from the environment variable env on first use (unset or
// empty: automatic; a bad name throws naming `where`), then whatever the setter stored. One per
// Policy type, so each policy passes its own env on every call.
template <class Policy>
Policy& process_policy(const char* env, const char* where) {
  static Policy p = [&] {
    const char* e = std::getenv(env);
    return e && *e ? policy_from_name<Policy>(e, where) : Policy::automatic;
  }();
  return p;
}

}  // namespace deftnn::gemm
