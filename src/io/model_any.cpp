// Model files by extension: `.onnx` goes through ONNX import/export (src/io/onnx_*.cpp, or
// src/io/onnx_unavailable.cpp in a build without Debian's ONNX headers), anything else is the
// native format (src/io/model_file.cpp).
#include "deftnn/io.h"
#include "deftnn/onnx.h"

namespace deftnn {

bool is_onnx_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".onnx") == 0;
}

Model load_any_model(const std::string& path) {
  return is_onnx_path(path) ? import_onnx(path) : load_model(path);
}

void save_any_model(const Model& m, const std::string& path) {
  if (is_onnx_path(path)) export_onnx(m, path);
  else save_model(m, path);
}

}  // namespace deftnn
