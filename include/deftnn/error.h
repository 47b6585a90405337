// deftnn: the one error type the library throws.
#pragma once
#include <stdexcept>
#include <string>

namespace deftnn {

// Every failure the library reports is a deftnn::Error carrying what failed and where
// (a file, a layer, a shape). The CLI turns it into one line and a non-zero exit.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error(msg) when cond is false. Cheap enough for argument checks on API boundaries.
inline void check(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace deftnn
