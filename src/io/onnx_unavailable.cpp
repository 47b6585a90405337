// ONNX import/export in a build without Debian's ONNX headers (DEFTNN_ONNX=OFF: for example the
// CUDA machine, which has no Debian registry). Compiled instead of onnx_import.cpp and
// onnx_export.cpp; every entry point says why it cannot run.
#include "deftnn/error.h"
#include "deftnn/onnx.h"

namespace deftnn {
namespace {
[[noreturn]] void unavailable(const std::string& what) {
  throw Error(what + ": this deftnn was built without ONNX support (libonnx-dev and protobuf were "
              "not found when it was configured; see scripts/setup.sh)");
}
}  // namespace

Model import_onnx(const std::string& path, const OnnxImportOptions&, OnnxImportInfo*) {
  unavailable("ONNX import of '" + path + "'");
}
Model import_onnx_bytes(const std::string&, const std::string&, const std::string& name,
                        const OnnxImportOptions&, OnnxImportInfo*) {
  unavailable("ONNX import of '" + name + "'");
}
Tensor read_onnx_tensor(const std::string& path) { unavailable("reading ONNX tensor '" + path + "'"); }
std::string export_onnx_bytes(const Model&, const OnnxExportOptions&) { unavailable("ONNX export"); }
void export_onnx(const Model&, const std::string& path, const OnnxExportOptions&) {
  unavailable("ONNX export to '" + path + "'");
}

}  // namespace deftnn
