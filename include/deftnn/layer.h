// deftnn: the layer contract. A layer computes forward and backward on NCHW fp32 tensors;
// it never knows which ISA runs its GEMMs, nor which file format stores it.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "deftnn/rng.h"
#include "deftnn/tensor.h"

namespace deftnn {

// A layer's hyper-parameters as typed key/values, so that model files, ONNX import and the
// zoo describe any layer the same way. Unknown keys are an error at construction.
using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

class Attrs {
 public:
  Attrs() = default;
  Attrs& set(const std::string& key, int64_t v) { items_[key] = v; return *this; }
  Attrs& set(const std::string& key, int v) { items_[key] = static_cast<int64_t>(v); return *this; }
  Attrs& set(const std::string& key, double v) { items_[key] = v; return *this; }
  Attrs& set(const std::string& key, std::vector<int64_t> v) { items_[key] = std::move(v); return *this; }
  Attrs& set(const std::string& key, std::string v) { items_[key] = std::move(v); return *this; }
  Attrs& set(const std::string& key, const char* v) { items_[key] = std::string(v); return *this; }
  Attrs& set_value(const std::string& key, AttrValue v) { items_[key] = std::move(v); return *this; }
  bool erase(const std::string& key) { return items_.erase(key) != 0; }

  bool has(const std::string& key) const { return items_.count(key) != 0; }
  // Getters throw Error naming the key when it is missing (no default) or of another type.
  // An int is accepted where a double is asked for; a single int where a list is asked for
  // is returned as a list of one.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double def) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key, std::vector<int64_t> def) const;
  std::string get_str(const std::string& key) const;
  std::string get_str(const std::string& key, const std::string& def) const;

  const std::map<std::string, AttrValue>& items() const { return items_; }
  // Throws Error naming the first key not in `allowed` (catches typos in model files).
  void check_keys(const std::string& layer_type, const std::vector<std::string>& allowed) const;
  // "kernel=[5, 5] stride=1"; a list longer than max_list shows its first max_list - 2 values
  // and its length ("retained=[0, 3, 4, ... (152 values)]").
  std::string str(size_t max_list = SIZE_MAX) const;

 private:
  std::map<std::string, AttrValue> items_;
};

// A learnable tensor and its gradient. lr_mult/decay_mult follow Caffe (biases: lr 2, decay 0).
struct Param {
  std::string name;   // "weight", "bias", "mean", ...
  Tensor value;
  Tensor grad;        // same shape as value when trainable; empty otherwise
  bool trainable = true;
  float lr_mult = 1.0f;
  float decay_mult = 1.0f;
};

// An output pass that the graph fuses into the layer producing a value (Model::forward of a
// frozen model, inference only; see Layer::accepts_fused_output): the layer's output y becomes
// relu(y + residual) (each part optional, applied in that order, with exactly the float operations
// of the separate add and relu layers), and with dst it is written at dst (image n at dst + n *
// dst_image_stride: a channel slice of a concat's output) instead of into `out`.
struct FusedOutput {
  const Tensor* residual = nullptr;   // same shape as the output; added after the layer's own bias
  bool relu = false;                  // ReLU with slope 0 last
  float* dst = nullptr;               // write here instead of `out` (which is left untouched)
  int64_t dst_image_stride = 0;       // floats between consecutive images at dst
};

// What a forward/backward call needs to know about the run.
struct RunContext {
  bool training = false;   // dropout active, caches kept for backward
  Rng* rng = nullptr;      // for dropout masks (training only)
  // The weights are constants (an inference session, Model::freeze): a layer may keep copies
  // derived from them across calls (fc: the weight matrix packed for the GEMM once, not on
  // every call). Never set together with training.
  bool frozen = false;
  // Inference only: the output pass fused into this call (null: none). Set by Model::forward only
  // for layers whose accepts_fused_output() is true.
  const FusedOutput* fused = nullptr;
};

class Layer {
 public:
  explicit Layer(Attrs attrs) : attrs_(std::move(attrs)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // The registry name: "conv", "fc", "relu", "maxpool", "avgpool", "lrn", "dropout",
  // "softmax", "flatten", "batchnorm", "concat", "add".
  virtual std::string type() const = 0;
  const Attrs& attrs() const { return attrs_; }

  // Validates input shapes (N first) and returns the output shape. On the first call it creates
  // the parameters (zero-filled) for these input shapes; later calls check they still fit.
  // Throws Error naming the layer type and the offending shape.
  virtual Shape infer(const std::vector<Shape>& inputs) = 0;

  // out is resized by the layer. Inputs are never modified.
  virtual void forward(const std::vector<const Tensor*>& in, Tensor& out, const RunContext& ctx) = 0;

  // Given dL/dout, writes dL/din[i] (overwrite, resized by the layer; din[i] == nullptr means not
  // needed) and ACCUMULATES (+=) dL/dparam into params()[j].grad. `in` and `out` are the tensors of
  // the matching forward call (made with ctx.training = true).
  virtual void backward(const std::vector<const Tensor*>& in, const Tensor& out, const Tensor& dout,
                        const std::vector<Tensor*>& din, const RunContext& ctx) = 0;

  // Which parts of RunContext::fused forward honours (FuseCap bits; 0: none, the graph never
  // passes it). conv: all (bias, residual add and ReLU in its output pass, output into a concat's
  // channel slice); fc: the ReLU.
  enum FuseCap : unsigned { kFuseRelu = 1, kFuseResidual = 2, kFuseSlice = 4 };
  virtual unsigned fused_output_caps() const { return 0; }
  bool accepts_fused_output() const { return fused_output_caps() != 0; }

  // Caffe-style fillers for the learnable parameters (xavier / gaussian per layer attrs).
  virtual void init_params(Rng& rng) { (void)rng; }

  // Floating-point operations of one forward call (a multiply-add counts 2).
  virtual int64_t flops(const std::vector<Shape>& inputs, const Shape& output) const {
    (void)inputs; (void)output; return 0;
  }

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* param(const std::string& name);   // nullptr if absent

  // Changes (or, erase_attr, removes) one attribute after construction. Only the attributes a
  // layer can re-read are accepted (conv and fc: format, fission_mode, rounding); anything else,
  // or a value the layer rejects, throws Error and leaves the attributes as they were.
  void set_attr(const std::string& key, AttrValue value);
  void erase_attr(const std::string& key);

  // Drops whatever the layer derived from its parameter values (conv and fc: the weights packed
  // in a reduced format on the first inference forward). Call it after changing weight values in
  // place outside training.
  virtual void invalidate() {}

  // Which implementation the last forward ran, in words (conv: "direct fp32 ... kernels",
  // "im2col + sgemm ...", fc: "gemv ..."); empty for layers with a single implementation.
  // DEFTNN_VERBOSE=1 prints it once per node and input shape (Model::forward).
  const std::string& last_kernel() const { return last_kernel_; }

 protected:
  // Re-reads attrs_ after set_attr/erase_attr changed `key`; throws Error to refuse (default:
  // every key is fixed at construction).
  virtual void attrs_changed(const std::string& key);

  Attrs attrs_;
  std::vector<Param> params_;
  std::string last_kernel_;   // set by forward (see last_kernel)
};

// DEFTNN_VERBOSE is set (not "0"): layers record which kernel they ran (Layer::last_kernel) and
// Model::forward prints it once per node and shape. Read once; set_kernel_report_enabled
// overrides it (tests that check which kernel a layer ran). Not thread-safe against running
// inference.
bool kernel_report_enabled();
void set_kernel_report_enabled(bool on);

// Creates a layer from its registry name and attributes; throws Error on an unknown type or key.
std::unique_ptr<Layer> make_layer(const std::string& type, const Attrs& attrs);
std::vector<std::string> layer_types();

}  // namespace deftnn
