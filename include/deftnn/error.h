// deftnn: the one error type the library throws.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

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

// Text safe to print on a terminal and to decode as UTF-8: valid UTF-8 sequences and newline /
// tab kept, every other byte (control characters, DEL, bytes of malformed or overlong
// sequences, surrogates) written as \xNN. Error messages quote names read from files (an ONNX
// node's input, a model's layer); from a corrupt file those can be arbitrary bytes.
std::string printable(std::string_view text);

}  // namespace deftnn
