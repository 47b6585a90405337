// deftnn: ONNX in and out, and NumPy .npy arrays for the `run` command.
//
// Import maps an ONNX graph (opsets 7 to 17) with one runtime input onto a deftnn Model. The
// batch is the input's first dimension (symbolic or not); every other dimension must be static.
// Everything computable from initialisers and static shapes (Shape/Gather/Unsqueeze/Concat chains,
// Constant, Reshape targets) is folded at import. BatchNormalization after a Conv is folded into
// it. An unsupported operator, attribute or shape throws Error naming the node, its operator and
// what is missing; a malformed or truncated file throws Error.
//
// Export writes a standard ONNX model (opset 13, IR 7) with a symbolic batch dimension whose
// outputs equal the Model's. Convolutions carrying synapse vector elimination (attr `retained`)
// are written as full-size weights with the eliminated synapses as zeros (the K/(K-D) scale is
// already in the stored weights).
#pragma once
#include <map>
#include <string>

#include "deftnn/model.h"
#include "deftnn/tensor.h"

namespace deftnn {

struct OnnxImportOptions {
  // Graph inputs bound to constants (e.g. a second operand in the ONNX backend tests). Every
  // graph input that is not an initialiser and not bound here must be the one runtime input.
  std::map<std::string, Tensor> constant_inputs;
  // Fold BatchNormalization into the preceding Conv when possible.
  bool fold_batchnorm = true;
};

struct OnnxImportInfo {
  std::string input_name, output_name;
  Shape input_shape;        // as declared, the batch dimension first (1 when symbolic)
  Shape output_shape;       // the ONNX output's shape at that batch
  int64_t opset = 0;        // default-domain opset
  std::string producer;
};

// Reads an ONNX file; external-data initialisers are read relative to its directory.
Model import_onnx(const std::string& path, const OnnxImportOptions& opt = {},
                  OnnxImportInfo* info = nullptr);
// Same from the bytes of a serialised ModelProto (external data relative to base_dir).
Model import_onnx_bytes(const std::string& bytes, const std::string& base_dir,
                        const std::string& name, const OnnxImportOptions& opt = {},
                        OnnxImportInfo* info = nullptr);

// A serialised onnx.TensorProto (.pb, as in the ONNX test data sets) as an fp32 Tensor; integer
// and double tensors are converted, a scalar becomes shape [1]. Throws Error naming the file.
Tensor read_onnx_tensor(const std::string& path);

struct OnnxExportOptions {
  std::string input_name = "input";
  std::string output_name = "output";
  std::string producer = "deftnn";
};

// Writes `m` as an ONNX model (opset 13). Throws Error naming the node for a layer type that has
// no ONNX equivalent. The write is atomic (temporary file, then rename).
void export_onnx(const Model& m, const std::string& path, const OnnxExportOptions& opt = {});
std::string export_onnx_bytes(const Model& m, const OnnxExportOptions& opt = {});

// A model file of either kind: ONNX when the name ends in .onnx, else a native deftnn file.
bool is_onnx_path(const std::string& path);
Model load_any_model(const std::string& path);
void save_any_model(const Model& m, const std::string& path);

// NumPy .npy (format 1.0-3.0, little-endian float32 '<f4', C order; float64 is converted on
// read). read_npy validates the magic, version, header dictionary and data length and throws Error
// naming the file.
Tensor read_npy(const std::string& path);
void write_npy(const Tensor& t, const std::string& path);

}  // namespace deftnn
