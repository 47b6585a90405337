// deftnn CUDA backend: a whole network on the GPU (cuda::Session). Built once from a Model for a
// batch size: weights packed in their format (eliminated layers keep their truncated, scaled
// weights and retained rows), activations in device buffers, every launch on one stream, and the
// forward pass captured as a CUDA graph so that a run is one launch (at batch 1 the layers take
// microseconds: launching them one by one would dominate).
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/gemm_internal.cuh"
#include "cuda/layers.cuh"
#include "deftnn/cuda.h"
#include "deftnn/model.h"
#include "ops/common.h"

namespace deftnn::cuda {

using ops::get_hw;
using ops::get_pads;
using ops::HW;
using ops::Pads;

namespace {

bool is_16bit(Format f) { return f == Format::half || f == Format::deft16 || f == Format::deft16q; }

[[noreturn]] void unsupported(const Node& n, const std::string& why) {
  throw Error("CUDA session: layer '" + n.name + "' (" + n.layer->type() + "): " + why);
}

}  // namespace

struct Session::Impl {
  struct Step {
    std::string name;
    std::function<void(cudaStream_t)> run;
  };
  int64_t batch = 0;
  SessionOptions opt;
  Shape in_shape, out_shape;
  std::vector<Shape> shapes;
  std::vector<DeviceBuffer> values;      // per value id (aliases hold no buffer)
  std::vector<int> alias;                // value id -> the id whose buffer it uses
  std::vector<PackedWeights> weights;    // kept alive for the steps
  std::vector<DeviceBuffer> scratch;     // biases, retained rows, column matrices
  std::vector<Step> steps;
  cudaStream_t stream = nullptr;
  cudaGraphExec_t graph = nullptr;
  std::string summary;

  float* value(int id) { return values[static_cast<size_t>(alias[static_cast<size_t>(id)])].as<float>(); }

  ~Impl() {
    if (graph) cudaGraphExecDestroy(graph);
    if (stream) cudaStreamDestroy(stream);
  }
};

Session::Session(const Model& model, int64_t batch, const SessionOptions& opt) : impl_(new Impl) {
  if (!available()) throw Error("CUDA session: no usable CUDA device");
  if (batch <= 0 || batch > 65536) throw Error("CUDA session: batch " + std::to_string(batch) + " out of range");
  if (!supported(opt.conv_format) || !supported(opt.fc_format))
    throw Error("CUDA session: weight format " +
                std::string(format_name(supported(opt.conv_format) ? opt.fc_format : opt.conv_format)) +
                " has no GPU kernel");
  Impl& s = *impl_;
  s.batch = batch;
  s.opt = opt;
  DEFTNN_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  s.shapes = model.value_shapes(batch);
  const auto& nodes = model.nodes();
  const size_t nv = s.shapes.size();
  s.alias.resize(nv);
  for (size_t i = 0; i < nv; ++i) s.alias[i] = static_cast<int>(i);
  s.in_shape = s.shapes[0];
  // Consumers per value (ReLU fuses into a GEMM whose output nothing else reads).
  std::vector<int> consumers(nv, 0);
  for (const Node& n : nodes)
    for (int v : n.inputs) ++consumers[static_cast<size_t>(v)];
  std::vector<bool> fused_relu(nv, false);   // a relu's output, applied in its GEMM's epilogue
  std::vector<bool> relu_after(nv, false);   // a GEMM's output whose epilogue applies ReLU

  auto upload_floats = [&](const float* p, int64_t n) {
    s.scratch.emplace_back(static_cast<size_t>(n) * 4);
    s.scratch.back().upload(p, static_cast<size_t>(n) * 4);
    return s.scratch.back().as<float>();
  };
  auto upload_rows = [&](const std::vector<int64_t>& r, int64_t off, int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(r[static_cast<size_t>(off + i)]);
    s.scratch.emplace_back(static_cast<size_t>(n) * 4);
    s.scratch.back().upload(v.data(), static_cast<size_t>(n) * 4);
    return s.scratch.back().as<int32_t>();
  };

  // Pass 1: aliases (dropout, flatten, fused ReLU) so that buffers are allocated once.
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const std::string t = n.layer->type();
    const int out = static_cast<int>(i) + 1;
    if (t == "dropout" || t == "flatten" || t == "reshape") {
      s.alias[static_cast<size_t>(out)] = s.alias[static_cast<size_t>(n.inputs[0])];
    } else if (t == "relu" && n.layer->attrs().get_float("negative_slope", 0.0) == 0.0) {
      const int in = n.inputs[0];
      if (in > 0 && consumers[static_cast<size_t>(in)] == 1) {
        const std::string pt = nodes[static_cast<size_t>(in - 1)].layer->type();
        if (pt == "conv" || pt == "fc") {
          s.alias[static_cast<size_t>(out)] = s.alias[static_cast<size_t>(in)];
          fused_relu[static_cast<size_t>(out)] = true;
          relu_after[static_cast<size_t>(in)] = true;
        }
      }
    }
  }
  auto numel_of = [&](int v) { return shape_numel(s.shapes[static_cast<size_t>(v)]); };
  s.values.resize(nv);
  for (size_t v = 0; v < nv; ++v)
    if (s.alias[v] == static_cast<int>(v)) s.values[v] = DeviceBuffer(static_cast<size_t>(numel_of(static_cast<int>(v))) * 4);

  int gemm_layers = 0, eliminated = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const std::string t = n.layer->type();
    const Attrs& a = n.layer->attrs();
    const int out = static_cast<int>(i) + 1;
    const int in = n.inputs.empty() ? 0 : n.inputs[0];
    const Shape& xs = s.shapes[static_cast<size_t>(in)];
    const Shape& ys = s.shapes[static_cast<size_t>(out)];
    Impl* S = &s;
    if (t == "dropout" || t == "flatten" || t == "reshape") continue;
    if (t == "relu" && fused_relu[static_cast<size_t>(out)]) continue;

    if (t == "conv" || t == "fc") {
      const bool conv = t == "conv";
      ++gemm_layers;
      const Param* wp = n.layer->param("weight");
      const Param* bp = n.layer->param("bias");
      if (!wp) unsupported(n, "no weights");
      const Format wf = conv ? opt.conv_format : opt.fc_format;
      const std::vector<int64_t> retained = a.get_ints("retained", {});
      const bool elim = !retained.empty();
      eliminated += elim;
      const float* bias = bp ? upload_floats(bp->value.data(), bp->value.numel()) : nullptr;
      ConvGeometry g;
      int64_t groups = 1, M = 0, K = 0, ohw = 1;
      if (conv) {
        const HW k = get_hw(a, t, "kernel"), st = get_hw(a, t, "stride", {1, 1}),
                 dl = get_hw(a, t, "dilation", {1, 1});
        const Pads p = get_pads(a, t);
        if (dl.h != 1 || dl.w != 1) unsupported(n, "dilation is not implemented on the GPU");
        if (p.t != p.b || p.l != p.r) unsupported(n, "asymmetric padding is not implemented on the GPU");
        groups = a.get_int("groups", 1);
        g.C = xs[1] / groups; g.H = xs[2]; g.W = xs[3];
        g.kh = k.h; g.kw = k.w; g.sh = st.h; g.sw = st.w; g.ph = p.t; g.pw = p.l;
        if (g.OH() != ys[2] || g.OW() != ys[3]) unsupported(n, "output size differs from the model's");
        M = ys[1] / groups;
        K = g.K();
        ohw = g.OH() * g.OW();
      } else {
        K = ops::prod(xs, 1, xs.size());
        g.C = K; g.H = 1; g.W = 1;
        M = ys[1];
      }
      const int64_t kept = elim ? static_cast<int64_t>(retained.size()) / groups : K;
      const int64_t N = batch * ohw;
      // B: fp32 for Deft-8 weights and for the batch-1 fully connected rows kernel (reads the
      // input in place when nothing is eliminated); the weights' 16-bit format otherwise.
      const bool rows_kernel = !conv && batch <= 8;
      // Tensor cores take 16-bit activations with any weights (Deft-16 codes with Deft-8).
      const bool tc = opt.staging == Staging::tensor_core && wf != Format::f32 && !rows_kernel;
      const Format bf = rows_kernel ? Format::f32
                        : is_16bit(wf) ? wf
                        : tc ? Format::deft16 : Format::f32;
      const int64_t ldb = rows_kernel ? N : padded_ld(N);
      // B = the input itself: [batch, K] is the K x batch operand only at batch 1 (otherwise the
      // 1x1 "im2col" transposes it, and it reads the retained rows of an eliminated layer).
      const bool use_input = rows_kernel && !elim && batch == 1;
      void* col = nullptr;   // the column matrices (device memory; the DeviceBuffer may move)
      if (!use_input) {
        s.scratch.emplace_back(static_cast<size_t>(encoded_bytes(bf, groups * kept * ldb)) + 64);
        col = s.scratch.back().data();
      }
      std::vector<const int32_t*> rows(static_cast<size_t>(groups), nullptr);
      for (int64_t gi = 0; gi < groups && elim; ++gi) rows[static_cast<size_t>(gi)] = upload_rows(retained, gi * kept, kept);
      std::vector<Operand> wops;
      for (int64_t gi = 0; gi < groups; ++gi) {
        s.weights.push_back(pack_weights(wp->value.data() + gi * M * kept, M, kept, kept, wf, opt.rounding));
        wops.push_back(s.weights.back().operand);
      }
      const bool relu = relu_after[static_cast<size_t>(out)];
      const int64_t img_elems = numel_of(in) / batch;
      const int64_t out_img = numel_of(out) / batch;
      // fp32 layers (and batch-1 fc rows) never take the tensor-core path.
      const Staging staging = (opt.staging == Staging::tensor_core && !tc) ? Staging::near_weights : opt.staging;
      const Rounding ar = opt.activation_rounding;
      const int64_t col_group_bytes = encoded_bytes(bf, kept * ldb);
      s.steps.push_back({n.name, [=](cudaStream_t stream) {
        const float* x = S->value(in);
        float* y = S->value(out);
        bool relu_left = false;
        for (int64_t gi = 0; gi < groups; ++gi) {
          Operand B;
          if (use_input) {
            B = Operand{Format::f32, x, K, N, ldb};
          } else {
            void* c = static_cast<char*>(col) + gi * col_group_bytes;
            im2col(g, batch, x + gi * g.C * g.H * g.W, img_elems, rows[static_cast<size_t>(gi)], kept, bf, ar, c, ldb, stream);
            B = Operand{bf, c, kept, N, ldb};
          }
          Epilogue e;
          e.C = y + gi * M * ohw;
          e.ldc = ohw;
          e.ohw = ohw;
          e.img_stride = out_img;
          e.bias = bias ? bias + gi * M : nullptr;
          e.relu = relu;
          relu_left |= gemm_ex(wops[static_cast<size_t>(gi)], B, e, 1.0f, staging, stream);
        }
        if (relu_left) cuda::relu(y, y, batch * out_img, 0.0f, stream);
      }});
      continue;
    }
    if (t == "relu") {
      const float slope = static_cast<float>(a.get_float("negative_slope", 0.0));
      const int64_t cnt = numel_of(out);
      s.steps.push_back({n.name, [=](cudaStream_t st) { cuda::relu(S->value(in), S->value(out), cnt, slope, st); }});
      continue;
    }
    if (t == "maxpool" || t == "avgpool") {
      PoolParams p;
      p.max = t == "maxpool";
      p.planes = xs[0] * xs[1];
      p.H = static_cast<int>(xs[2]); p.W = static_cast<int>(xs[3]);
      p.OH = static_cast<int>(ys[2]); p.OW = static_cast<int>(ys[3]);
      if (a.get_int("global", 0) == 1) {
        p.kh = p.H; p.kw = p.W;
      } else {
        const HW k = get_hw(a, t, "kernel"), st = get_hw(a, t, "stride", {1, 1});
        const Pads pd = get_pads(a, t);
        p.kh = static_cast<int>(k.h); p.kw = static_cast<int>(k.w);
        p.sh = static_cast<int>(st.h); p.sw = static_cast<int>(st.w);
        p.pt = static_cast<int>(pd.t); p.pl = static_cast<int>(pd.l);
        p.pb = static_cast<int>(pd.b); p.pr = static_cast<int>(pd.r);
      }
      p.count_include_pad = p.max || a.get_int("count_include_pad", 1) == 1;
      s.steps.push_back({n.name, [=](cudaStream_t st) { cuda::pool(p, S->value(in), S->value(out), st); }});
      continue;
    }
    if (t == "lrn") {
      const int size = static_cast<int>(a.get_int("size", 5));
      const float al = static_cast<float>(a.get_float("alpha", 1e-4)), be = static_cast<float>(a.get_float("beta", 0.75)),
                  kk = static_cast<float>(a.get_float("k", 1.0));
      const int64_t S2 = ops::prod(xs, 2, xs.size());
      const int C = static_cast<int>(xs[1]);
      s.steps.push_back({n.name, [=](cudaStream_t st) {
        cuda::lrn(S->value(in), S->value(out), batch, C, S2, size, al, be, kk, st);
      }});
      continue;
    }
    if (t == "eltwise_const") {
      const Param* v = n.layer->param("value");
      if (!v || v->value.numel() != 1) unsupported(n, "only a scalar constant is implemented on the GPU");
      const std::string op = a.get_str("op", "add");
      if (op != "add" && op != "mul") unsupported(n, "op '" + op + "' is not implemented on the GPU");
      const int o = op == "add" ? 0 : 1;
      const float val = v->value[0];
      const int64_t cnt = numel_of(out);
      s.steps.push_back({n.name, [=](cudaStream_t st) { cuda::scalar_op(S->value(in), S->value(out), cnt, o, val, st); }});
      continue;
    }
    if (t == "add" && n.inputs.size() == 2 && s.shapes[static_cast<size_t>(n.inputs[1])] == xs) {
      const int in2 = n.inputs[1];
      const int64_t cnt = numel_of(out);
      s.steps.push_back({n.name, [=](cudaStream_t st) { cuda::add(S->value(in), S->value(in2), S->value(out), cnt, st); }});
      continue;
    }
    if (t == "softmax" && ys.size() == 2 && (a.get_int("axis", 1) == 1 || a.get_int("axis", 1) == -1)) {
      const int64_t rows = ys[0];
      const int classes = static_cast<int>(ys[1]);
      s.steps.push_back({n.name, [=](cudaStream_t st) { cuda::softmax(S->value(in), S->value(out), rows, classes, st); }});
      continue;
    }
    if (t == "concat" && a.get_int("axis", 1) == 1 && ys.size() >= 2) {
      std::vector<int> ins = n.inputs;
      std::vector<int64_t> per_img;
      for (int v : ins) per_img.push_back(numel_of(v) / batch);
      const int64_t out_img = numel_of(out) / batch;
      s.steps.push_back({n.name, [=](cudaStream_t st) {
        int64_t off = 0;
        for (size_t k = 0; k < ins.size(); ++k) {
          DEFTNN_CUDA_CHECK(cudaMemcpy2DAsync(S->value(out) + off, out_img * 4, S->value(ins[k]), per_img[k] * 4,
                                              per_img[k] * 4, batch, cudaMemcpyDeviceToDevice, st));
          off += per_img[k];
        }
      }});
      continue;
    }
    unsupported(n, "not implemented on the GPU");
  }
  s.out_shape = s.shapes.back();
  s.summary = std::to_string(s.steps.size()) + " steps, " + std::to_string(gemm_layers) + " GEMM layers (" +
              std::to_string(eliminated) + " eliminated), conv weights " + format_name(opt.conv_format) +
              ", fc weights " + format_name(opt.fc_format) + ", staging " + staging_name(opt.staging);
  // Capture the forward pass as a graph.
  cudaGraph_t graph;
  DEFTNN_CUDA_CHECK(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal));
  for (auto& st : s.steps) st.run(s.stream);
  DEFTNN_CUDA_CHECK(cudaStreamEndCapture(s.stream, &graph));
  DEFTNN_CUDA_CHECK(cudaGraphInstantiate(&s.graph, graph, 0));
  cudaGraphDestroy(graph);
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

const Shape& Session::input_shape() const { return impl_->in_shape; }
const Shape& Session::output_shape() const { return impl_->out_shape; }
const std::string& Session::summary() const { return impl_->summary; }

Tensor Session::run(const Tensor& input) {
  Impl& s = *impl_;
  if (input.shape() != s.in_shape)
    throw Error("CUDA session: input is " + shape_str(input.shape()) + ", the session was built for " +
                shape_str(s.in_shape));
  DEFTNN_CUDA_CHECK(cudaMemcpyAsync(s.value(0), input.data(), static_cast<size_t>(input.numel()) * 4,
                                    cudaMemcpyHostToDevice, s.stream));
  DEFTNN_CUDA_CHECK(cudaGraphLaunch(s.graph, s.stream));
  Tensor out(s.out_shape);
  DEFTNN_CUDA_CHECK(cudaMemcpyAsync(out.data(), s.value(static_cast<int>(s.shapes.size()) - 1),
                                    static_cast<size_t>(out.numel()) * 4, cudaMemcpyDeviceToHost, s.stream));
  DEFTNN_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  return out;
}

double Session::time_ms(int reps) {
  Impl& s = *impl_;
  return cuda::time_ms([&] { DEFTNN_CUDA_CHECK(cudaGraphLaunch(s.graph, s.stream)); }, 3, reps, false, s.stream);
}

std::vector<std::pair<std::string, double>> Session::layer_ms(int reps) {
  Impl& s = *impl_;
  std::vector<std::pair<std::string, double>> out;
  for (auto& st : s.steps)
    out.emplace_back(st.name, cuda::time_ms([&] { st.run(s.stream); }, 2, reps, false, s.stream));
  return out;
}

}  // namespace deftnn::cuda
