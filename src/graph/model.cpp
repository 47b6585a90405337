#include "deftnn/model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "deftnn/error.h"

namespace deftnn {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
Shape with_batch(int64_t batch, const Shape& s) {
  Shape r{batch};
  r.insert(r.end(), s.begin(), s.end());
  return r;
}
}  // namespace

Model::Model(Shape input_shape) : input_shape_(std::move(input_shape)) {
  for (int64_t d : input_shape_)
    check(d > 0, "model input shape " + shape_str(input_shape_) + " must be positive");
}

int Model::find(const std::string& name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return static_cast<int>(i);
  return -1;
}

int Model::add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<int> inputs) {
  check(layer != nullptr, "Model::add: null layer for node '" + name + "'");
  check(!name.empty(), "Model::add: empty node name");
  check(find(name) < 0, "Model::add: duplicate node name '" + name + "'");
  int next = static_cast<int>(nodes_.size()) + 1;
  if (inputs.empty()) inputs.push_back(next - 1);
  for (int v : inputs)
    check(v >= 0 && v < next, "node '" + name + "': input value id " + std::to_string(v) +
                                  " does not exist (values 0.." + std::to_string(next - 1) + ")");
  std::vector<Shape> shapes = value_shapes(1);
  std::vector<Shape> in;
  for (int v : inputs) in.push_back(shapes[v]);
  try {
    layer->infer(in);
  } catch (const Error& e) {
    throw Error("node '" + name + "' (" + layer->type() + "): " + e.what());
  }
  nodes_.push_back(Node{name, std::move(layer), std::move(inputs), {}});
  plan_.valid = false;
  return next;
}

int Model::add(const std::string& name, const std::string& type, const Attrs& attrs,
               std::vector<int> inputs) {
  std::unique_ptr<Layer> layer;
  try {
    layer = make_layer(type, attrs);
  } catch (const Error& e) {
    throw Error("node '" + name + "': " + e.what());
  }
  return add(name, std::move(layer), std::move(inputs));
}

std::vector<Shape> Model::value_shapes(int64_t batch) const {
  std::vector<Shape> shapes;
  shapes.reserve(nodes_.size() + 1);
  shapes.push_back(with_batch(batch, input_shape_));
  for (const Node& n : nodes_) {
    std::vector<Shape> in;
    for (int v : n.inputs) in.push_back(shapes[v]);
    try {
      shapes.push_back(n.layer->infer(in));
    } catch (const Error& e) {
      throw Error("node '" + n.name + "' (" + n.layer->type() + "): " + e.what());
    }
  }
  return shapes;
}

Shape Model::output_shape(int64_t batch) const { return value_shapes(batch).back(); }

int64_t Model::num_params() const {
  int64_t n = 0;
  for (const Node& node : nodes_)
    for (const Param& p : node.layer->params()) n += p.value.numel();
  return n;
}

int64_t Model::flops(int64_t batch) const {
  std::vector<Shape> shapes = value_shapes(batch);
  int64_t f = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    std::vector<Shape> in;
    for (int v : nodes_[i].inputs) in.push_back(shapes[v]);
    f += nodes_[i].layer->flops(in, shapes[i + 1]);
  }
  return f;
}

void Model::init_params(uint64_t seed) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    // One stream per node, so adding a node does not change the others' initial weights.
    Rng rng(seed * 1000003ull + i);
    nodes_[i].layer->init_params(rng);
    nodes_[i].layer->invalidate();
  }
}

namespace {
bool& kernel_report_flag() {
  static bool v = [] {
    const char* e = std::getenv("DEFTNN_VERBOSE");
    return e && *e && std::string(e) != "0";
  }();
  return v;
}
}  // namespace

bool kernel_report_enabled() { return kernel_report_flag(); }
void set_kernel_report_enabled(bool on) { kernel_report_flag() = on; }

void Model::freeze(bool on) {
  if (frozen_ && !on)
    for (Node& n : nodes_) n.layer->invalidate();
  frozen_ = on;
  plan_.valid = false;
}

namespace {
bool fusion_enabled_by_env() {
  static const bool v = [] {
    const char* e = std::getenv("DEFTNN_FUSE");
    return !(e && std::string(e) == "0");
  }();
  return v;
}
bool memplan_enabled_by_env() {
  static const bool v = [] {
    const char* e = std::getenv("DEFTNN_MEMPLAN");
    return !(e && std::string(e) == "0");
  }();
  return v;
}
bool plain_relu(const Node& n) {
  return n.layer->type() == "relu" && n.inputs.size() == 1 &&
         n.layer->attrs().get_float("negative_slope", 0.0) == 0.0;
}
}  // namespace

void Model::set_memory_plan(bool on) {
  mem_plan_on_ = on;
  if (!on) drop_mem_plan();
}

void Model::drop_mem_plan() {
  for (size_t v = 0; v < mem_.slot.size() && v < values_.size(); ++v)
    if (mem_.slot[v] >= 0) values_[v] = Tensor();
  mem_ = MemPlan{};
}

// Lifetimes in steps (node indices) of the fused run: a node that runs reads its inputs and its
// fused residual and writes its chain's last value or its concat's; skipped nodes touch
// nothing. A value lives from the first step touching it to the last. Values sharing storage
// with another (a reshape's output, the model input, the returned output) keep their own;
// values the fused run never touches (a fused-away node's own output, left by an unfused or
// training forward) are released.
void Model::make_mem_plan(const Shape& input) {
  drop_mem_plan();
  const size_t nn = nodes_.size(), nv = nn + 1;
  if (values_.size() != nv) return;
  std::vector<int> birth(nv, -1), death(nv, -1);
  auto touch = [&](int v, int i) {
    if (birth[v] < 0) birth[v] = i;
    death[v] = i;
  };
  for (size_t i = 0; i < nn; ++i) {
    if (plan_.skip[i]) continue;
    const int step = static_cast<int>(i);
    for (int v : nodes_[i].inputs) touch(v, step);
    if (plan_.residual[i] >= 0) touch(plan_.residual[i], step);
    touch(plan_.concat[i] >= 0 ? plan_.concat[i] + 1 : plan_.out_value[i], step);
  }
  std::map<const float*, int> owners;
  for (size_t v = 0; v < nv; ++v)
    if (!values_[v].empty()) ++owners[values_[v].data()];
  std::vector<int> order;
  for (size_t v = 1; v + 1 < nv; ++v) {
    if (values_[v].empty() || owners[values_[v].data()] != 1) continue;
    if (birth[v] >= 0)
      order.push_back(static_cast<int>(v));
    else
      values_[v] = Tensor();   // not touched by the fused run (a fused-away node's own output)
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return birth[a] < birth[b]; });
  // Greedy by birth: a free buffer that fits, the most recently freed first (its lines are the
  // likeliest still in cache); else the most recently freed, grown; else a new one.
  mem_.slot.assign(nv, -1);
  std::vector<int> free_at;   // per buffer: the last step of its current value
  for (int v : order) {
    const int64_t need = values_[v].numel();
    int best = -1, grow = -1;
    for (size_t b = 0; b < free_at.size(); ++b) {
      if (free_at[b] >= birth[v]) continue;
      const int bi = static_cast<int>(b);
      if (mem_.caps[b] >= need && (best < 0 || free_at[b] > free_at[best])) best = bi;
      if (grow < 0 || free_at[b] > free_at[grow]) grow = bi;
    }
    if (best < 0 && grow >= 0) {
      best = grow;
      mem_.caps[best] = need;
    }
    if (best < 0) {
      best = static_cast<int>(free_at.size());
      free_at.push_back(-1);
      mem_.caps.push_back(need);
    }
    free_at[best] = death[v];
    mem_.slot[v] = best;
  }
  for (int64_t cap : mem_.caps)
    mem_.bufs.emplace_back(aligned_alloc_floats(cap), aligned_free);
  for (int v : order)
    values_[v] = Tensor::over(mem_.bufs[mem_.slot[v]], mem_.caps[mem_.slot[v]], values_[v].shape());
  mem_.input = input;
  mem_.active = true;
}

int64_t Model::activation_bytes() const {
  std::set<const float*> seen;
  int64_t floats = 0;
  for (int64_t cap : mem_.caps) floats += cap;
  for (size_t v = 1; v < values_.size(); ++v) {
    if (values_[v].empty() || (v < mem_.slot.size() && mem_.slot[v] >= 0)) continue;
    if (seen.insert(values_[v].data()).second) floats += values_[v].numel();
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

void Model::make_fuse_plan() {
  drop_mem_plan();
  const size_t nn = nodes_.size(), nv = nn + 1;
  FusePlan& p = plan_;
  p.skip.assign(nn, 0);
  p.out_value.resize(nn);
  for (size_t i = 0; i < nn; ++i) p.out_value[i] = static_cast<int>(i) + 1;
  p.residual.assign(nn, -1);
  p.relu.assign(nn, 0);
  p.concat.assign(nn, -1);
  p.slice_offset.assign(nn, 0);
  p.concat_shape.assign(nn, Shape{});
  p.skipped = 0;
  p.valid = true;
  if (!fusion_ || !fusion_enabled_by_env() || nn == 0) return;
  // uses[v]: how many node inputs read value v (the model output counts as one more);
  // user[v]: the node reading it when there is one.
  std::vector<int> uses(nv, 0), user(nv, -1);
  for (size_t i = 0; i < nn; ++i)
    for (int v : nodes_[i].inputs) {
      ++uses[v];
      user[v] = static_cast<int>(i);
    }
  ++uses[nv - 1];
  auto sole_user = [&](int v) { return uses[v] == 1 ? user[v] : -1; };
  for (size_t i = 0; i < nn; ++i) {
    const unsigned caps = nodes_[i].layer->fused_output_caps();
    if (!caps || p.skip[i]) continue;
    const int v = static_cast<int>(i) + 1;
    int last = v;
    const int j = sole_user(v);
    if (j >= 0 && (caps & Layer::kFuseRelu) && plain_relu(nodes_[j])) {
      p.relu[i] = 1;
      p.skip[j] = 1;
      last = j + 1;
    } else if (j >= 0 && (caps & Layer::kFuseResidual) && nodes_[j].layer->type() == "add" &&
               nodes_[j].inputs.size() == 2 &&
               nodes_[j].inputs[0] != nodes_[j].inputs[1]) {
      const int other = nodes_[j].inputs[0] == v ? nodes_[j].inputs[1] : nodes_[j].inputs[0];
      if (other < v) {   // computed before the conv runs
        p.residual[i] = other;
        p.skip[j] = 1;
        last = j + 1;
        const int r = sole_user(last);
        if (r >= 0 && (caps & Layer::kFuseRelu) && plain_relu(nodes_[r])) {
          p.relu[i] = 1;
          p.skip[r] = 1;
          last = r + 1;
        }
      }
    }
    p.out_value[i] = last;
  }
  // A channel concat all of whose inputs are fused chains read by it alone: each chain writes
  // its slice of the concat's output.
  std::vector<Shape> shapes;
  for (size_t k = 0; k < nn; ++k) {
    const Node& c = nodes_[k];
    if (c.layer->type() != "concat" || p.skip[k]) continue;
    const int64_t axis = c.layer->attrs().get_int("axis", 1);
    if (axis != 1 && axis != -3) continue;
    std::vector<int> producers;
    std::set<int> seen;
    for (int v : c.inputs) {
      int prod = -1;
      for (size_t i = 0; i < nn && prod < 0; ++i)
        if ((nodes_[i].layer->fused_output_caps() & Layer::kFuseSlice) && !p.skip[i] &&
            p.out_value[i] == v)
          prod = static_cast<int>(i);
      if (prod < 0 || uses[v] != 1 || !seen.insert(v).second) {
        producers.clear();
        break;
      }
      producers.push_back(prod);
    }
    if (producers.empty()) continue;
    if (shapes.empty()) shapes = value_shapes(1);
    const Shape& cs = shapes[k + 1];
    if (cs.size() != 4) continue;
    int64_t off = 0;
    for (size_t q = 0; q < producers.size(); ++q) {
      const Shape& s = shapes[c.inputs[q]];
      p.concat[producers[q]] = static_cast<int>(k);
      p.slice_offset[producers[q]] = off;
      off += s[1] * s[2] * s[3];
    }
    p.concat_shape[k] = cs;
    p.skip[k] = 1;
  }
  for (char s : p.skip) p.skipped += s;
}

int Model::fused_nodes() {
  if (!plan_.valid) make_fuse_plan();
  return plan_.skipped;
}

const Tensor& Model::forward(const Tensor& input, bool training, Rng* rng) {
  check(!nodes_.empty(), "Model::forward: the model has no layers");
  check(input.ndim() == static_cast<int>(input_shape_.size()) + 1,
        "model input must be [N, " + shape_str(input_shape_).substr(1) + ", got " +
            shape_str(input.shape()));
  for (size_t i = 0; i < input_shape_.size(); ++i)
    check(input.shape()[i + 1] == input_shape_[i],
          "model input must be [N, " + shape_str(input_shape_).substr(1) + ", got " +
              shape_str(input.shape()));
  values_.resize(nodes_.size() + 1);
  timings_.resize(nodes_.size());
  values_[0] = input;
  RunContext ctx{training, rng, frozen_ && !training};
  // Inference of a frozen model: the fused plan (see fused_nodes).
  const bool fuse = frozen_ && !training;
  if (fuse && !plan_.valid) make_fuse_plan();
  if (mem_.active && (!fuse || !plan_.valid || input.shape() != mem_.input)) drop_mem_plan();
  const int64_t N = input.dim(0);
  std::vector<const Tensor*> in;
  FusedOutput fo;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    if (fuse && plan_.skip[i]) {   // ran inside its producer's output pass
      if (timing_) timings_[i].forward_ms = 0;
      continue;
    }
    in.clear();
    for (int v : n.inputs) in.push_back(&values_[v]);
    Tensor* out = &values_[i + 1];
    ctx.fused = nullptr;
    if (fuse && (plan_.out_value[i] != static_cast<int>(i) + 1 || plan_.residual[i] >= 0 ||
                 plan_.relu[i] || plan_.concat[i] >= 0)) {
      fo = FusedOutput{};
      fo.relu = plan_.relu[i] != 0;
      if (plan_.residual[i] >= 0) fo.residual = &values_[plan_.residual[i]];
      out = &values_[plan_.out_value[i]];
      if (plan_.concat[i] >= 0) {
        Tensor& c = values_[plan_.concat[i] + 1];
        Shape cs = plan_.concat_shape[plan_.concat[i]];
        cs[0] = N;
        if (c.shape() != cs) c.resize(cs);
        fo.dst = c.data() + plan_.slice_offset[i];
        fo.dst_image_stride = c.numel() / N;
      }
      ctx.fused = &fo;
    }
    auto t0 = Clock::now();
    try {
      n.layer->forward(in, *out, ctx);
    } catch (const Error& e) {
      throw Error("node '" + n.name + "' (" + n.layer->type() + "): " + e.what());
    }
    if (timing_) timings_[i].forward_ms = ms_since(t0);
    if (kernel_report_enabled() && !n.layer->last_kernel().empty()) {
      const std::string shape = ctx.fused && ctx.fused->dst
                                    ? "slice of " + nodes_[plan_.concat[i]].name + " " +
                                          shape_str(values_[plan_.concat[i] + 1].shape())
                                    : shape_str(out->shape());
      std::string key = shape + n.layer->last_kernel();
      if (n.reported != key) {
        n.reported = key;
        std::fprintf(stderr, "deftnn: %s (%s) -> %s: %s\n", n.name.c_str(), n.layer->type().c_str(),
                     shape.c_str(), n.layer->last_kernel().c_str());
      }
    }
  }
  last_training_ = training;
  if (fuse && !mem_.active && mem_plan_on_ && memplan_enabled_by_env()) make_mem_plan(input.shape());
  return values_.back();
}

void Model::backward(const Tensor& doutput, Rng* rng) {
  check(last_training_ && values_.size() == nodes_.size() + 1,
        "Model::backward needs a preceding forward(training = true)");
  check(doutput.shape() == values_.back().shape(),
        "Model::backward: gradient shape " + shape_str(doutput.shape()) + " does not match output " +
            shape_str(values_.back().shape()));
  size_t nv = values_.size();
  grads_.resize(nv);
  // Which values need a gradient: every value produced by a node that has a learnable param
  // upstream; the model input never does.
  std::vector<bool> has_grad(nv, false);
  grads_[nv - 1] = doutput;
  has_grad[nv - 1] = true;
  RunContext ctx{true, rng};
  std::vector<const Tensor*> in;
  std::vector<Tensor*> din;
  std::vector<Tensor> scratch;
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& n = nodes_[i];
    if (!has_grad[i + 1]) continue;
    in.clear();
    din.clear();
    scratch.assign(n.inputs.size(), Tensor());
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      int v = n.inputs[j];
      in.push_back(&values_[v]);
      // The model input needs no gradient. A value consumed twice accumulates (scratch + add).
      if (v == 0) din.push_back(nullptr);
      else if (!has_grad[v]) din.push_back(&grads_[v]);
      else din.push_back(&scratch[j]);
    }
    auto t0 = Clock::now();
    try {
      n.layer->backward(in, values_[i + 1], grads_[i + 1], din, ctx);
    } catch (const Error& e) {
      throw Error("node '" + n.name + "' (" + n.layer->type() + ") backward: " + e.what());
    }
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      int v = n.inputs[j];
      if (v == 0) continue;
      if (din[j] == &scratch[j]) {
        float* g = grads_[v].data();
        const float* s = scratch[j].data();
        for (int64_t k = 0; k < grads_[v].numel(); ++k) g[k] += s[k];
      }
      has_grad[v] = true;
    }
    if (timing_) timings_[i].backward_ms = ms_since(t0);
  }
}

void Model::zero_grad() {
  for (Node& n : nodes_)
    for (Param& p : n.layer->params())
      if (p.trainable) {
        if (p.grad.shape() != p.value.shape()) p.grad = Tensor(p.value.shape());
        else p.grad.zero();
      }
}

int Model::fold_batchnorm() {
  int folded = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& bn = nodes_[i];
    if (bn.layer->type() != "batchnorm" || bn.inputs.size() != 1 || bn.inputs[0] == 0) continue;
    int conv_idx = bn.inputs[0] - 1;
    Node& conv = nodes_[conv_idx];
    if (conv.layer->type() != "conv") continue;
    int consumers = 0;
    for (const Node& n : nodes_)
      for (int v : n.inputs) consumers += (v == conv_idx + 1);
    if (consumers != 1) continue;
    conv.layer->invalidate();   // its weights change in place below
    Param* w = conv.layer->param("weight");
    Param* b = conv.layer->param("bias");
    if (!w || !b) continue;  // a bias-less conv cannot absorb the shift without a new param
    const Tensor& mean = bn.layer->param("mean")->value;
    const Tensor& var = bn.layer->param("var")->value;
    const Tensor& scale = bn.layer->param("scale")->value;
    const Tensor& shift = bn.layer->param("shift")->value;
    double eps = bn.layer->attrs().get_float("eps", 1e-5);
    int64_t oc = w->value.dim(0), per = w->value.numel() / oc;
    for (int64_t c = 0; c < oc; ++c) {
      float f = scale[c] / std::sqrt(var[c] + static_cast<float>(eps));
      for (int64_t k = 0; k < per; ++k) w->value[c * per + k] *= f;
      b->value[c] = (b->value[c] - mean[c]) * f + shift[c];
    }
    // Rewire consumers of the batchnorm to the conv, then drop the batchnorm node.
    int bn_value = static_cast<int>(i) + 1;
    for (Node& n : nodes_)
      for (int& v : n.inputs) {
        if (v == bn_value) v = conv_idx + 1;
        else if (v > bn_value) --v;
      }
    nodes_.erase(nodes_.begin() + static_cast<long>(i));
    --i;
    ++folded;
  }
  values_.clear();
  grads_.clear();
  plan_.valid = false;
  return folded;
}

std::string Model::summary(int64_t batch) const {
  std::vector<Shape> shapes = value_shapes(batch);
  std::ostringstream os;
  os << "input " << shape_str(shapes[0]) << "\n";
  os << std::left << std::setw(12) << "layer" << std::setw(10) << "type" << std::setw(22)
     << "output" << std::right << std::setw(12) << "params" << std::setw(14) << "MFLOPs"
     << "  attributes\n";
  int64_t total_p = 0, total_f = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    std::vector<Shape> in;
    for (int v : n.inputs) in.push_back(shapes[v]);
    int64_t p = 0;
    for (const Param& pr : n.layer->params()) p += pr.value.numel();
    int64_t f = n.layer->flops(in, shapes[i + 1]);
    total_p += p;
    total_f += f;
    os << std::left << std::setw(12) << printable(n.name) << std::setw(10) << n.layer->type() << std::setw(22)
       << shape_str(shapes[i + 1]) << std::right << std::setw(12) << p << std::setw(14)
       << std::fixed << std::setprecision(2) << f / 1e6 << "  " << n.layer->attrs().str(10) << "\n";
  }
  os << "total: " << total_p << " parameters, " << std::fixed << std::setprecision(2)
     << total_f / 1e6 << " MFLOPs per forward at batch " << batch << "\n";
  return os.str();
}

}  // namespace deftnn
