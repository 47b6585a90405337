// deftnn: a model is a DAG of named layers over one input, with shape inference and a parameter
// store. Value 0 is the model input; node i produces value i + 1; the last node is the output.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deftnn/layer.h"
#include "deftnn/tensor.h"

namespace deftnn {

struct Node {
  std::string name;
  std::unique_ptr<Layer> layer;
  std::vector<int> inputs;   // value ids (0 = model input, i + 1 = output of node i)
  std::string reported;      // DEFTNN_VERBOSE: the output shape + kernel last printed
};

// Per-node wall time of the last forward (and backward) call, for `deftnn bench` and the demo.
struct NodeTiming {
  double forward_ms = 0;
  double backward_ms = 0;
};

class Model {
 public:
  // input_shape is one sample's shape without the batch dimension, e.g. {1, 28, 28}.
  explicit Model(Shape input_shape = {});
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;

  // Appends a node; inputs default to the previous value. Checks names are unique and inputs
  // exist, runs shape inference (throws Error naming the node on a mismatch). Returns its value id.
  int add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<int> inputs = {});
  int add(const std::string& name, const std::string& type, const Attrs& attrs,
          std::vector<int> inputs = {});

  const Shape& input_shape() const { return input_shape_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  std::vector<Node>& nodes() { return nodes_; }
  int find(const std::string& name) const;   // node index, -1 if absent
  Shape output_shape(int64_t batch = 1) const;
  // Shapes of every value (index = value id) for a given batch size.
  std::vector<Shape> value_shapes(int64_t batch) const;
  int64_t num_params() const;
  int64_t flops(int64_t batch = 1) const;    // forward FLOPs

  // Initialises every learnable parameter with the layer's filler, deterministically from seed.
  void init_params(uint64_t seed);

  // Forward over a batch [N, input_shape...]. In training mode the activations are kept for
  // backward(). Throws Error when the input shape does not match.
  const Tensor& forward(const Tensor& input, bool training = false, Rng* rng = nullptr);
  // Back-propagates dL/doutput through the graph, accumulating parameter gradients.
  void backward(const Tensor& doutput, Rng* rng = nullptr);
  void zero_grad();

  // Inference session: while frozen, the weights are treated as constants and layers may keep
  // copies derived from them across forward calls (like ONNX Runtime's or oneDNN's prepacked
  // weights). Do not change weights while frozen; freeze(false) drops the derived copies.
  // Training forwards never use them.
  void freeze(bool on);
  bool frozen() const { return frozen_; }

  // Timing of the last forward/backward, per node (filled when timing is enabled).
  void set_timing(bool on) { timing_ = on; }
  const std::vector<NodeTiming>& timings() const { return timings_; }

  // Folds every batchnorm that directly follows a conv (its only consumer) into that conv's
  // weights and bias and removes the batchnorm node. Returns the number folded.
  int fold_batchnorm();

  // Human-readable summary: one row per node with type, attrs, output shape, params, FLOPs.
  std::string summary(int64_t batch = 1) const;

  // Inference fusion of a frozen model (Model::forward, never in training): a conv whose only
  // consumer is a ReLU, an Add (with an operand computed before it) optionally followed by a
  // ReLU, runs them in its own output pass; such a fused chain whose only consumer is a channel
  // concat (axis 1) writes straight into its slice of the concat's output. The results are
  // bit-identical to the unfused graph. Returns how many nodes the fusion skips (for tests and
  // DEFTNN_VERBOSE); on by default, DEFTNN_FUSE=0 or set_fusion(false) turns it off.
  int fused_nodes();
  void set_fusion(bool on) { fusion_ = on; plan_.valid = false; }

  // Activation memory plan of a frozen model's inference (like ONNX Runtime's or TensorRT's):
  // after a fused forward, activations whose lifetimes do not overlap share buffers, a new one
  // taking the most recently freed (still in cache), so a layer's output overwrites lines
  // another layer just read instead of fetching cold ones from DRAM. Made again when the input
  // shape or the graph changes; never in training (every activation lives until backward).
  // On by default; DEFTNN_MEMPLAN=0 or set_memory_plan(false) turns it off. Intermediate
  // activations are not kept: only the output of forward is.
  void set_memory_plan(bool on);
  // Bytes of activation storage (the model input excluded) the last forward used; with the
  // plan active, of its shared buffers.
  int64_t activation_bytes() const;

 private:
  // Per node: how Model::forward runs it when the fusion applies.
  struct FusePlan {
    bool valid = false;                  // made for the current graph
    std::vector<char> skip;              // node runs inside its producer's output pass
    std::vector<int> out_value;          // value a fused conv writes (its chain's last value)
    std::vector<int> residual;           // value added in the output pass (-1: none)
    std::vector<char> relu;              // ReLU in the output pass
    std::vector<int> concat;             // node index of the concat it writes into (-1: none)
    std::vector<int64_t> slice_offset;   // floats from the concat image start to its slice
    std::vector<Shape> concat_shape;     // per concat node written by slices: its shape at batch 1
    int skipped = 0;
  };
  // Buffers shared by values of a fused inference (see set_memory_plan).
  struct MemPlan {
    bool active = false;
    Shape input;                                // the input shape it was made for
    std::vector<int> slot;                      // per value: its buffer, -1: its own storage
    std::vector<std::shared_ptr<float>> bufs;
    std::vector<int64_t> caps;                  // floats per buffer
  };
  void make_fuse_plan();
  void make_mem_plan(const Shape& input);
  void drop_mem_plan();
  void reinfer();
  Shape input_shape_;
  std::vector<Node> nodes_;
  std::vector<Tensor> values_;   // activations of the last forward
  std::vector<Tensor> grads_;    // gradients w.r.t. values during backward
  std::vector<NodeTiming> timings_;
  bool timing_ = false;
  bool frozen_ = false;
  bool last_training_ = false;
  bool fusion_ = true;
  FusePlan plan_;
  bool mem_plan_on_ = true;
  MemPlan mem_;
};

}  // namespace deftnn
