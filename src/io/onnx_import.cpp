// ONNX import: ModelProto (opsets 7-17) -> deftnn Model. Every tensor name maps either to a
// constant (initialisers, Constant nodes and everything computed only from them and from static
// shapes, folded here) or to a runtime value of the Model with its static shape at the declared
// batch. See include/deftnn/onnx.h for the contract.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/onnx.h"

namespace deftnn {
namespace {

// A folded constant: floats or integers (integers keep int64 exactly for shapes and indices).
struct Const {
  Shape shape;
  bool is_int = false;
  std::vector<float> f;
  std::vector<int64_t> i;
  int64_t numel() const { return is_int ? static_cast<int64_t>(i.size()) : static_cast<int64_t>(f.size()); }
  double at(int64_t k) const { return is_int ? static_cast<double>(i[k]) : static_cast<double>(f[k]); }
  int64_t iat(int64_t k) const { return is_int ? i[k] : static_cast<int64_t>(f[k]); }
  std::vector<int64_t> ints() const {
    std::vector<int64_t> v(static_cast<size_t>(numel()));
    for (int64_t k = 0; k < numel(); ++k) v[k] = iat(k);
    return v;
  }
  Tensor tensor() const {
    Tensor t(shape.empty() ? Shape{1} : shape);
    for (int64_t k = 0; k < numel(); ++k) t[k] = static_cast<float>(at(k));
    return t;
  }
  static Const ints_of(Shape s, std::vector<int64_t> v) {
    Const c;
    c.shape = std::move(s);
    c.is_int = true;
    c.i = std::move(v);
    return c;
  }
  static Const floats_of(Shape s, std::vector<float> v) {
    Const c;
    c.shape = std::move(s);
    c.f = std::move(v);
    return c;
  }
};

struct Val {
  bool is_const = false;
  Const c;
  int id = -1;  // runtime value id in the Model
};

[[noreturn]] void fail_file(const std::string& name, const std::string& msg) {
  throw Error("ONNX '" + name + "': " + msg);
}

int64_t checked_numel(const Shape& s, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw Error(what + " has a negative dimension " + shape_str(s));
    if (d != 0 && n > (int64_t{1} << 40) / d) throw Error(what + " is too large " + shape_str(s));
    n *= d;
  }
  return n;
}

bool is_int_type(int dt) {
  using T = onnx::TensorProto;
  return dt == T::INT64 || dt == T::INT32 || dt == T::INT16 || dt == T::INT8 || dt == T::UINT8 ||
         dt == T::UINT16 || dt == T::UINT32 || dt == T::UINT64 || dt == T::BOOL;
}

size_t elem_size(int dt) {
  using T = onnx::TensorProto;
  switch (dt) {
    case T::FLOAT: case T::INT32: case T::UINT32: return 4;
    case T::DOUBLE: case T::INT64: case T::UINT64: return 8;
    case T::INT16: case T::UINT16: return 2;
    case T::INT8: case T::UINT8: case T::BOOL: return 1;
    default: return 0;
  }
}

// Decodes `n` little-endian elements of type dt from raw bytes.
void decode_raw(const std::string& raw, int dt, int64_t n, Const& c) {
  using T = onnx::TensorProto;
  const char* p = raw.data();
  for (int64_t k = 0; k < n; ++k) {
    const char* e = p + k * static_cast<int64_t>(elem_size(dt));
    switch (dt) {
      case T::FLOAT: { float v; std::memcpy(&v, e, 4); c.f[k] = v; break; }
      case T::DOUBLE: { double v; std::memcpy(&v, e, 8); c.f[k] = static_cast<float>(v); break; }
      case T::INT64: case T::UINT64: { int64_t v; std::memcpy(&v, e, 8); c.i[k] = v; break; }
      case T::INT32: { int32_t v; std::memcpy(&v, e, 4); c.i[k] = v; break; }
      case T::UINT32: { uint32_t v; std::memcpy(&v, e, 4); c.i[k] = v; break; }
      case T::INT16: { int16_t v; std::memcpy(&v, e, 2); c.i[k] = v; break; }
      case T::UINT16: { uint16_t v; std::memcpy(&v, e, 2); c.i[k] = v; break; }
      case T::INT8: c.i[k] = static_cast<int8_t>(*e); break;
      case T::UINT8: case T::BOOL: c.i[k] = static_cast<uint8_t>(*e); break;
      default: break;
    }
  }
}

std::string read_external(const onnx::TensorProto& t, const std::string& base_dir, size_t want) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : t.external_data()) {
    try {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = std::stoll(kv.value());
      else if (kv.key() == "length") length = std::stoll(kv.value());
    } catch (const std::exception&) {
      throw Error("external data of '" + t.name() + "': bad " + kv.key() + " '" + kv.value() + "'");
    }
  }
  if (location.empty()) throw Error("external data of '" + t.name() + "' has no location");
  if (location[0] == '/' || location.find("..") != std::string::npos)
    throw Error("external data of '" + t.name() + "': location '" + location +
                "' must be a relative path inside the model's directory");
  if (offset < 0 || (length >= 0 && static_cast<size_t>(length) != want))
    throw Error("external data of '" + t.name() + "': offset/length do not match its " +
                std::to_string(want) + " bytes");
  const std::string path = (base_dir.empty() ? std::string(".") : base_dir) + "/" + location;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error("external data of '" + t.name() + "': cannot open '" + path + "'");
  const int64_t size = static_cast<int64_t>(f.tellg());
  if (offset + static_cast<int64_t>(want) > size)
    throw Error("external data of '" + t.name() + "': '" + path + "' is truncated (" +
                std::to_string(size) + " bytes, needs " + std::to_string(offset + want) + ")");
  std::string buf(want, '\0');
  f.seekg(offset);
  f.read(buf.data(), static_cast<std::streamsize>(want));
  if (!f) throw Error("external data of '" + t.name() + "': read failed on '" + path + "'");
  return buf;
}

Const from_tensor_proto(const onnx::TensorProto& t, const std::string& base_dir) {
  using T = onnx::TensorProto;
  const std::string what = "tensor '" + t.name() + "'";
  Const c;
  for (int64_t d : t.dims()) c.shape.push_back(d);
  const int64_t n = checked_numel(c.shape, what);
  const int dt = t.data_type();
  if (dt != T::FLOAT && dt != T::DOUBLE && !is_int_type(dt))
    throw Error(what + ": unsupported data type " + T::DataType_Name(static_cast<T::DataType>(dt)));
  if (t.has_segment()) throw Error(what + ": segmented tensors are not supported");
  c.is_int = is_int_type(dt);
  if (c.is_int) c.i.resize(n); else c.f.resize(n);
  const size_t es = elem_size(dt);
  if (t.data_location() == T::EXTERNAL) {
    decode_raw(read_external(t, base_dir, es * static_cast<size_t>(n)), dt, n, c);
    return c;
  }
  if (t.has_raw_data()) {
    if (t.raw_data().size() != es * static_cast<size_t>(n))
      throw Error(what + ": raw data holds " + std::to_string(t.raw_data().size()) + " bytes, " +
                  shape_str(c.shape) + " needs " + std::to_string(es * n));
    decode_raw(t.raw_data(), dt, n, c);
    return c;
  }
  auto need = [&](int64_t have) {
    if (have != n)
      throw Error(what + ": holds " + std::to_string(have) + " values, " + shape_str(c.shape) +
                  " needs " + std::to_string(n));
  };
  switch (dt) {
    case T::FLOAT: need(t.float_data_size()); for (int64_t k = 0; k < n; ++k) c.f[k] = t.float_data(k); break;
    case T::DOUBLE: need(t.double_data_size()); for (int64_t k = 0; k < n; ++k) c.f[k] = static_cast<float>(t.double_data(k)); break;
    case T::INT64: need(t.int64_data_size()); for (int64_t k = 0; k < n; ++k) c.i[k] = t.int64_data(k); break;
    case T::UINT32: case T::UINT64: need(t.uint64_data_size()); for (int64_t k = 0; k < n; ++k) c.i[k] = static_cast<int64_t>(t.uint64_data(k)); break;
    default: need(t.int32_data_size()); for (int64_t k = 0; k < n; ++k) c.i[k] = t.int32_data(k); break;
  }
  return c;
}

// NumPy broadcasting of two constants' shapes.
Shape bcast_shape(const Shape& a, const Shape& b) {
  Shape o(std::max(a.size(), b.size()), 1);
  for (size_t k = 0; k < o.size(); ++k) {
    const int64_t da = k < o.size() - a.size() ? 1 : a[k - (o.size() - a.size())];
    const int64_t db = k < o.size() - b.size() ? 1 : b[k - (o.size() - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error("shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    o[k] = da == 1 ? db : da;
  }
  return o;
}

// Flat index into a tensor of shape s (right-aligned to o) for the flat index k of o.
int64_t bcast_index(const Shape& s, const Shape& o, int64_t k) {
  int64_t idx = 0, mul = 1;
  for (size_t d = o.size(); d-- > 0;) {
    const int64_t od = k % o[d];
    k /= o[d];
    const size_t off = o.size() - s.size();
    if (d < off) continue;
    const int64_t sd = s[d - off];
    idx += (sd == 1 ? 0 : od) * mul;
    mul *= sd;
  }
  return idx;
}

class Importer {
 public:
  Importer(const onnx::ModelProto& mp, std::string base_dir, std::string file,
           const OnnxImportOptions& opt)
      : mp_(mp), base_(std::move(base_dir)), file_(std::move(file)), opt_(opt) {}

  Model run(OnnxImportInfo* info) {
    for (const auto& os : mp_.opset_import())
      if (os.domain().empty() || os.domain() == "ai.onnx") opset_ = os.version();
    if (opset_ == 0) fail_file(file_, "no default-domain opset_import");
    // 7 to 17 are claimed; older opsets are read too, every node still checked attribute by
    // attribute (opset-6 PyTorch exports differ from 7 only in attributes that are checked).
    if (opset_ < 1 || opset_ > 17)
      fail_file(file_, "opset " + std::to_string(opset_) + " is not supported (7 to 17 are)");
    if (!mp_.has_graph()) fail_file(file_, "no graph");
    const auto& g = mp_.graph();

    for (const auto& t : g.initializer()) {
      try {
        vals_[t.name()] = const_val(from_tensor_proto(t, base_));
      } catch (const Error& e) {
        fail_file(file_, std::string("initializer: ") + e.what());
      }
    }
    for (const auto& [name, t] : opt_.constant_inputs) {
      Const c = Const::floats_of(t.shape(), std::vector<float>(t.data(), t.data() + t.numel()));
      vals_[name] = const_val(std::move(c));
    }
    // The one runtime input.
    const onnx::ValueInfoProto* in = nullptr;
    for (const auto& vi : g.input()) {
      if (vals_.count(vi.name())) continue;
      if (in) fail_file(file_, "graph has more than one runtime input ('" + in->name() + "', '" +
                                    vi.name() + "'); deftnn models take one");
      in = &vi;
    }
    if (!in) fail_file(file_, "graph has no runtime input (every input is a constant)");
    input_shape_ = input_dims(*in);
    batch_ = input_shape_[0];
    m_ = Model(Shape(input_shape_.begin() + 1, input_shape_.end()));
    Val iv;
    iv.id = 0;
    vals_[in->name()] = iv;
    shapes_.push_back(input_shape_);

    if (g.output_size() != 1)
      fail_file(file_, "graph has " + std::to_string(g.output_size()) + " outputs; deftnn models have one");
    const std::string out_name = g.output(0).name();

    // Only the nodes the output depends on.
    std::set<std::string> needed{out_name};
    std::vector<bool> keep(static_cast<size_t>(g.node_size()), false);
    for (int k = g.node_size(); k-- > 0;) {
      const auto& n = g.node(k);
      bool use = false;
      for (const auto& o : n.output()) use = use || needed.count(o);
      if (!use) continue;
      keep[k] = true;
      for (const auto& i : n.input())
        if (!i.empty()) needed.insert(i);
    }
    needed_ = needed;
    for (int k = 0; k < g.node_size(); ++k)
      if (keep[k]) convert(g.node(k), k);

    auto it = vals_.find(out_name);
    if (it == vals_.end()) fail_file(file_, "graph output '" + out_name + "' is never produced");
    Val out = it->second;
    if (out.is_const) {
      Attrs a;
      a.set("value_shape", out.c.shape.empty() ? Shape{1} : out.c.shape).set("batch_free", 1);
      out.id = add_node(out_name, "constant", a, {0});
      set_param(out.id, "value", out.c.tensor());
    } else if (out.id != static_cast<int>(m_.nodes().size()) || out.id == 0) {
      // The output is an earlier value (e.g. the input through Identity): make it the last node.
      Shape s = shapes_[out.id];
      out.id = add_node(out_name + "_out", "reshape", Attrs().set("shape", Shape(s.begin() + 1, s.end())),
                        {out.id});
    }
    const Shape out_shape = shapes_[out.id];
    if (opt_.fold_batchnorm) m_.fold_batchnorm();
    if (info) {
      info->input_name = in->name();
      info->output_name = out_name;
      info->input_shape = input_shape_;
      info->output_shape = out_shape;
      info->opset = opset_;
      info->producer = mp_.producer_name() + (mp_.producer_version().empty() ? "" : " " + mp_.producer_version());
    }
    return std::move(m_);
  }

 private:
  static Val const_val(Const c) {
    Val v;
    v.is_const = true;
    v.c = std::move(c);
    return v;
  }

  Shape input_dims(const onnx::ValueInfoProto& vi) const {
    const std::string what = "input '" + vi.name() + "'";
    if (!vi.type().has_tensor_type()) fail_file(file_, what + " is not a tensor");
    const auto& tt = vi.type().tensor_type();
    if (tt.elem_type() != onnx::TensorProto::FLOAT)
      fail_file(file_, what + " has element type " +
                           onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(tt.elem_type())) +
                           "; deftnn runs float32");
    if (!tt.has_shape()) fail_file(file_, what + " has no shape");
    Shape s;
    for (int k = 0; k < tt.shape().dim_size(); ++k) {
      const auto& d = tt.shape().dim(k);
      if (d.has_dim_value() && d.dim_value() > 0) {
        s.push_back(d.dim_value());
      } else if (k == 0) {
        s.push_back(1);  // a symbolic batch
      } else {
        fail_file(file_, what + " dimension " + std::to_string(k) + " is not static ('" +
                             d.dim_param() + "'); only the batch may be symbolic");
      }
    }
    if (s.empty()) fail_file(file_, what + " is a scalar; deftnn needs a batch dimension");
    return s;
  }

  // ---- node helpers ----
  const onnx::NodeProto* node_ = nullptr;
  std::string node_name_;

  [[noreturn]] void unsupported(const std::string& what) const {
    throw Error("ONNX node '" + node_name_ + "' (" + node_->op_type() + "): " + what);
  }

  int ninputs() const {
    int n = node_->input_size();
    while (n > 0 && node_->input(n - 1).empty()) --n;
    return n;
  }
  bool has_input(int k) const { return k < node_->input_size() && !node_->input(k).empty(); }
  const Val& in(int k) const {
    if (!has_input(k)) unsupported("input " + std::to_string(k) + " is missing");
    auto it = vals_.find(node_->input(k));
    if (it == vals_.end()) unsupported("input '" + node_->input(k) + "' is not defined before it");
    return it->second;
  }
  const Const& cin(int k, const std::string& role) const {
    const Val& v = in(k);
    if (!v.is_const) unsupported(role + " (input " + std::to_string(k) + " '" + node_->input(k) +
                                 "') must be a constant (an initializer), not a runtime tensor");
    return v.c;
  }
  int din(int k) const {
    const Val& v = in(k);
    if (v.is_const) unsupported("input " + std::to_string(k) + " must be the runtime tensor; constant "
                                "data operands are supported only in shape computations");
    return v.id;
  }
  const Shape& shape_of(int k) const {
    const Val& v = in(k);
    return v.is_const ? v.c.shape : shapes_[v.id];
  }

  const onnx::AttributeProto* attr(const std::string& n) const {
    for (const auto& a : node_->attribute())
      if (a.name() == n) return &a;
    return nullptr;
  }
  int64_t attr_int(const std::string& n, int64_t def) const {
    auto* a = attr(n);
    return a ? a->i() : def;
  }
  double attr_float(const std::string& n, double def) const {
    auto* a = attr(n);
    return a ? a->f() : def;
  }
  std::string attr_str(const std::string& n, const std::string& def) const {
    auto* a = attr(n);
    return a ? a->s() : def;
  }
  std::vector<int64_t> attr_ints(const std::string& n, std::vector<int64_t> def) const {
    auto* a = attr(n);
    if (!a) return def;
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  void allow_attrs(const std::vector<std::string>& ok) const {
    for (const auto& a : node_->attribute())
      if (std::find(ok.begin(), ok.end(), a.name()) == ok.end())
        unsupported("attribute '" + a.name() + "' is not supported");
  }
  void set_out(Val v, int k = 0) {
    if (k < node_->output_size() && !node_->output(k).empty()) vals_[node_->output(k)] = std::move(v);
  }
  void set_out_id(int id) {
    Val v;
    v.id = id;
    set_out(v);
  }
  void set_out_const(Const c) { set_out(const_val(std::move(c))); }
  void only_first_output_used() const {
    for (int k = 1; k < node_->output_size(); ++k)
      if (!node_->output(k).empty() && needed_.count(node_->output(k)))
        unsupported("output " + std::to_string(k) + " ('" + node_->output(k) + "') is not supported");
  }

  int add_node(const std::string& base, const std::string& type, const Attrs& a, std::vector<int> inputs) {
    std::string name = base.empty() ? type : base;
    if (used_names_.count(name)) {
      int k = 1;
      while (used_names_.count(name + "_" + std::to_string(k))) ++k;
      name += "_" + std::to_string(k);
    }
    used_names_.insert(name);
    const int id = m_.add(name, type, a, inputs);
    std::vector<Shape> in;
    for (int v : inputs) in.push_back(shapes_[v]);
    shapes_.push_back(m_.nodes().back().layer->infer(in));
    return id;
  }
  int add(const std::string& type, const Attrs& a, std::vector<int> inputs, const std::string& suffix = "") {
    try {
      return add_node(node_name_ + suffix, type, a, std::move(inputs));
    } catch (const Error& e) {
      unsupported(e.what());
    }
  }
  void set_param(int id, const std::string& name, const Tensor& t) {
    Param* p = m_.nodes()[id - 1].layer->param(name);
    if (!p) unsupported("layer has no parameter '" + name + "'");
    if (p->value.numel() != t.numel())
      unsupported("parameter '" + name + "' needs " + shape_str(p->value.shape()) + ", got " + shape_str(t.shape()));
    std::memcpy(p->value.data(), t.data(), sizeof(float) * static_cast<size_t>(t.numel()));
  }
  int64_t norm_axis(int64_t axis, size_t rank) const {
    const int64_t r = static_cast<int64_t>(rank);
    if (axis < -r || axis >= r)
      unsupported("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
    return axis < 0 ? axis + r : axis;
  }
  // A constant as a runtime value (for Concat/Add with a runtime tensor): value_shape must have
  // the runtime rank; its first dimension is 1 (repeated over the batch) or the batch.
  int const_node(const Const& c, size_t rank, const std::string& suffix) {
    Shape s = c.shape;
    if (s.size() > rank) unsupported("constant operand " + shape_str(s) + " has a higher rank than the runtime tensor");
    s.insert(s.begin(), rank - s.size(), 1);
    const int id = add("constant", Attrs().set("value_shape", s), {0}, suffix);
    set_param(id, "value", c.tensor());
    return id;
  }
  Shape aligned(const Shape& s, size_t rank) const {
    Shape o = s;
    o.insert(o.begin(), rank - s.size(), 1);
    return o;
  }

  // Pads and output size for 2-D windows with auto_pad.
  std::vector<int64_t> window_pads(const Shape& x, const std::vector<int64_t>& k,
                                   const std::vector<int64_t>& s, const std::vector<int64_t>& d) {
    const std::string ap = attr_str("auto_pad", "NOTSET");
    std::vector<int64_t> pads = attr_ints("pads", {0, 0, 0, 0});
    if (pads.size() != 4) unsupported("pads must have 4 entries for a 2-D window");
    if (ap == "NOTSET") return pads;
    if (ap == "VALID") return {0, 0, 0, 0};
    if (ap != "SAME_UPPER" && ap != "SAME_LOWER") unsupported("auto_pad '" + ap + "' is not supported");
    for (int a = 0; a < 2; ++a) {
      const int64_t in = x[2 + a], out = (in + s[a] - 1) / s[a];
      const int64_t total = std::max<int64_t>((out - 1) * s[a] + (k[a] - 1) * d[a] + 1 - in, 0);
      const int64_t small = total / 2, big = total - small;
      pads[a] = ap == "SAME_UPPER" ? small : big;
      pads[a + 2] = ap == "SAME_UPPER" ? big : small;
    }
    return pads;
  }
  void need_rank4(int k) const {
    if (shape_of(k).size() != 4)
      unsupported("only 2-D (rank-4 NCHW) inputs are supported, got " + shape_str(shape_of(k)));
  }
  std::vector<int64_t> pair_attr(const std::string& n, std::vector<int64_t> def) const {
    auto v = attr_ints(n, def);
    if (v.size() != 2) unsupported("attribute '" + n + "' must have 2 entries for a 2-D window");
    return v;
  }

  // ---- constant folding helpers ----
  Const fold_binary(const Const& a, const Const& b, const std::function<double(double, double)>& fn, bool keep_int) {
    Shape o = bcast_shape(a.shape, b.shape);
    const int64_t n = checked_numel(o, "result");
    Const c;
    c.shape = o;
    c.is_int = keep_int && a.is_int && b.is_int;
    if (c.is_int) c.i.resize(n); else c.f.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      const double v = fn(a.at(bcast_index(a.shape, o, k)), b.at(bcast_index(b.shape, o, k)));
      if (c.is_int) c.i[k] = static_cast<int64_t>(v); else c.f[k] = static_cast<float>(v);
    }
    return c;
  }

  // ---- operators ----
  void convert(const onnx::NodeProto& n, int index) {
    node_ = &n;
    node_name_ = n.name().empty() ? n.op_type() + "_" + std::to_string(index) : n.name();
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      unsupported("operator domain '" + n.domain() + "' is not supported");
    const std::string& op = n.op_type();
    static const std::map<std::string, void (Importer::*)()> table = {
        {"Conv", &Importer::conv}, {"Gemm", &Importer::gemm}, {"MatMul", &Importer::matmul},
        {"Relu", &Importer::relu}, {"LeakyRelu", &Importer::leaky_relu}, {"Clip", &Importer::clip},
        {"Sigmoid", &Importer::sigmoid}, {"MaxPool", &Importer::maxpool},
        {"AveragePool", &Importer::avgpool}, {"GlobalAveragePool", &Importer::global_avgpool},
        {"GlobalMaxPool", &Importer::global_maxpool}, {"LRN", &Importer::lrn},
        {"BatchNormalization", &Importer::batchnorm}, {"Concat", &Importer::concat},
        {"Add", &Importer::add_op}, {"Mul", &Importer::mul_op}, {"Sub", &Importer::sub_op},
        {"Div", &Importer::div_op}, {"Flatten", &Importer::flatten},
        {"Reshape", &Importer::reshape}, {"Shape", &Importer::shape}, {"Gather", &Importer::gather},
        {"Unsqueeze", &Importer::unsqueeze}, {"Squeeze", &Importer::squeeze},
        {"Cast", &Importer::cast}, {"Softmax", &Importer::softmax}, {"Dropout", &Importer::dropout},
        {"Identity", &Importer::identity}, {"Pad", &Importer::pad}, {"Constant", &Importer::constant},
    };
    auto it = table.find(op);
    if (it == table.end()) unsupported("operator is not supported");
    try {
      (this->*(it->second))();
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.rfind("ONNX node", 0) == 0) throw;
      unsupported(msg);
    }
  }

  void conv() {
    allow_attrs({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
    need_rank4(0);
    const int x = din(0);
    const Const& w = cin(1, "the weight W");
    if (w.shape.size() != 4) unsupported("weight W must be [O, C/group, kH, kW], got " + shape_str(w.shape));
    const Shape& xs = shapes_[x];
    const int64_t group = attr_int("group", 1);
    if (group <= 0 || w.shape[1] * group != xs[1])
      unsupported("weight " + shape_str(w.shape) + " with group " + std::to_string(group) +
                  " does not fit input " + shape_str(xs));
    auto k = attr_ints("kernel_shape", {w.shape[2], w.shape[3]});
    if (k.size() != 2 || k[0] != w.shape[2] || k[1] != w.shape[3])
      unsupported("kernel_shape does not match the weight " + shape_str(w.shape));
    auto s = pair_attr("strides", {1, 1});
    auto d = pair_attr("dilations", {1, 1});
    auto pads = window_pads(xs, k, s, d);
    Attrs a;
    a.set("out_channels", w.shape[0]).set("kernel", k).set("stride", s).set("dilation", d)
        .set("pads", pads).set("groups", group).set("bias", 1);
    const int id = add("conv", a, {x});
    set_param(id, "weight", w.tensor());
    if (has_input(2)) {
      const Const& b = cin(2, "the bias B");
      if (b.numel() != w.shape[0]) unsupported("bias has " + std::to_string(b.numel()) + " values for " +
                                               std::to_string(w.shape[0]) + " output channels");
      set_param(id, "bias", b.tensor());
    }
    set_out_id(id);
  }

  // fc from a runtime [M, K] and a constant weight [N, K] (already alpha-scaled) plus optional C.
  void fc_from(int x, const Tensor& w, int64_t nout, const Const* c, double beta) {
    const int id = add("fc", Attrs().set("out_features", nout).set("bias", 1), {x});
    set_param(id, "weight", w);
    if (!c || beta == 0.0) {
      set_out_id(id);
      return;
    }
    const int64_t M = shapes_[x][0];
    const Shape cs = aligned(c->shape, 2);
    if (c->shape.size() > 2 || (cs[1] != 1 && cs[1] != nout) || (cs[0] != 1 && cs[0] != M))
      unsupported("C " + shape_str(c->shape) + " does not broadcast to [" + std::to_string(M) + ", " +
                  std::to_string(nout) + "]");
    if (cs[0] == 1) {
      Tensor b({nout});
      for (int64_t j = 0; j < nout; ++j) b[j] = static_cast<float>(beta * c->at(cs[1] == 1 ? 0 : j));
      set_param(id, "bias", b);
      set_out_id(id);
      return;
    }
    // A C that varies along the batch: an elementwise constant add after the fc.
    Tensor cv = c->tensor().reshaped(cs);
    for (int64_t j = 0; j < cv.numel(); ++j) cv[j] = static_cast<float>(beta * cv[j]);
    const int id2 = add("eltwise_const", Attrs().set("op", "add").set("value_shape", cs), {id}, "_C");
    set_param(id2, "value", cv);
    set_out_id(id2);
  }

  void gemm() {
    allow_attrs({"alpha", "beta", "transA", "transB", "broadcast"});
    if (attr_int("transA", 0) != 0) unsupported("transA = 1 on the runtime operand A is not supported");
    const int x = din(0);
    if (shapes_[x].size() != 2) unsupported("A must be 2-D, got " + shape_str(shapes_[x]));
    const Const& b = cin(1, "B");
    if (b.shape.size() != 2) unsupported("B must be 2-D, got " + shape_str(b.shape));
    const bool tb = attr_int("transB", 0) != 0;
    const double alpha = attr_float("alpha", 1.0), beta = attr_float("beta", 1.0);
    const int64_t K = tb ? b.shape[1] : b.shape[0], N = tb ? b.shape[0] : b.shape[1];
    if (K != shapes_[x][1]) unsupported("B " + shape_str(b.shape) + " does not fit A " + shape_str(shapes_[x]));
    Tensor w({N, K});
    for (int64_t o = 0; o < N; ++o)
      for (int64_t i = 0; i < K; ++i)
        w[o * K + i] = static_cast<float>(alpha * b.at(tb ? o * K + i : i * N + o));
    const Const* c = has_input(2) ? &cin(2, "C") : nullptr;
    fc_from(x, w, N, c, beta);
  }

  void matmul() {
    allow_attrs({});
    const int x = din(0);
    const Const& b = cin(1, "B");
    if (shapes_[x].size() != 2 || b.shape.size() != 2)
      unsupported("only a 2-D runtime A times a 2-D constant B is supported, got " +
                  shape_str(shapes_[x]) + " x " + shape_str(b.shape));
    const int64_t K = b.shape[0], N = b.shape[1];
    if (K != shapes_[x][1]) unsupported("B " + shape_str(b.shape) + " does not fit A " + shape_str(shapes_[x]));
    Tensor w({N, K});
    for (int64_t o = 0; o < N; ++o)
      for (int64_t i = 0; i < K; ++i) w[o * K + i] = static_cast<float>(b.at(i * N + o));
    fc_from(x, w, N, nullptr, 0.0);
  }

  void relu() {
    allow_attrs({});
    set_out_id(add("relu", Attrs(), {din(0)}));
  }
  void leaky_relu() {
    allow_attrs({"alpha"});
    set_out_id(add("relu", Attrs().set("negative_slope", attr_float("alpha", 0.01)), {din(0)}));
  }
  void sigmoid() {
    allow_attrs({});
    set_out_id(add("sigmoid", Attrs(), {din(0)}));
  }
  void clip() {
    double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
    if (opset_ < 11) {
      allow_attrs({"min", "max"});
      lo = attr_float("min", lo);
      hi = attr_float("max", hi);
    } else {
      allow_attrs({});
      if (has_input(1)) lo = cin(1, "min").at(0);
      if (has_input(2)) hi = cin(2, "max").at(0);
    }
    const int x = din(0);
    if (lo == 0.0 && std::isinf(hi) && hi > 0) {
      set_out_id(add("relu", Attrs(), {x}));
      return;
    }
    if (lo > hi) unsupported("min > max is not supported");
    Attrs a;
    if (!std::isinf(lo)) a.set("min", lo);
    if (!std::isinf(hi)) a.set("max", hi);
    set_out_id(add("clip", a, {x}));
  }

  void pool(bool is_max) {
    if (is_max) allow_attrs({"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"});
    else allow_attrs({"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"});
    only_first_output_used();
    need_rank4(0);
    const int x = din(0);
    auto k = attr_ints("kernel_shape", {});
    if (k.size() != 2) unsupported("kernel_shape must have 2 entries");
    auto s = pair_attr("strides", {1, 1});
    auto d = pair_attr("dilations", {1, 1});
    if (d[0] != 1 || d[1] != 1) unsupported("dilations other than 1 are not supported");
    auto pads = window_pads(shapes_[x], k, s, d);
    const int64_t ceil = attr_int("ceil_mode", 0);
    if (pads[0] >= k[0] || pads[2] >= k[0] || pads[1] >= k[1] || pads[3] >= k[1])
      unsupported("pads " + shape_str(pads) + " as large as the kernel are not supported");
    Attrs a;
    a.set("kernel", k).set("stride", s).set("pads", pads).set("ceil_mode", ceil);
    if (!is_max) a.set("count_include_pad", attr_int("count_include_pad", 0));
    set_out_id(add(is_max ? "maxpool" : "avgpool", a, {x}));
  }
  void maxpool() { pool(true); }
  void avgpool() { pool(false); }
  void global_avgpool() {
    allow_attrs({});
    need_rank4(0);
    set_out_id(add("avgpool", Attrs().set("global", 1).set("ceil_mode", 0), {din(0)}));
  }
  void global_maxpool() {
    allow_attrs({});
    need_rank4(0);
    set_out_id(add("maxpool", Attrs().set("global", 1).set("ceil_mode", 0), {din(0)}));
  }
  void lrn() {
    allow_attrs({"alpha", "beta", "bias", "size"});
    need_rank4(0);
    Attrs a;
    a.set("size", attr_int("size", 0)).set("alpha", attr_float("alpha", 1e-4))
        .set("beta", attr_float("beta", 0.75)).set("k", attr_float("bias", 1.0));
    set_out_id(add("lrn", a, {din(0)}));
  }
  void batchnorm() {
    allow_attrs({"epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"});
    if (attr_int("training_mode", 0) != 0) unsupported("training_mode = 1 is not supported");
    if (attr_int("spatial", 1) != 1) unsupported("spatial = 0 is not supported");
    only_first_output_used();
    const int x = din(0);
    const Shape& xs = shapes_[x];
    if (xs.size() < 2) unsupported("input must be [N, C, ...], got " + shape_str(xs));
    const int64_t C = xs[1];
    const char* names[] = {"scale", "shift", "mean", "var"};
    std::vector<Tensor> p;
    for (int k = 0; k < 4; ++k) {
      const Const& c = cin(k + 1, names[k]);
      if (c.numel() != C) unsupported(std::string(names[k]) + " has " + std::to_string(c.numel()) +
                                      " values for " + std::to_string(C) + " channels");
      p.push_back(c.tensor().reshaped({C}));
    }
    const int id = add("batchnorm", Attrs().set("eps", attr_float("epsilon", 1e-5)), {x});
    for (int k = 0; k < 4; ++k) set_param(id, names[k], p[k]);
    set_out_id(id);
  }

  void concat() {
    allow_attrs({"axis"});
    if (!attr("axis")) unsupported("attribute 'axis' is required");
    const int nin = ninputs();
    bool all_const = true;
    size_t rank = 0;
    for (int k = 0; k < nin; ++k) {
      all_const = all_const && in(k).is_const;
      if (!in(k).is_const) rank = shapes_[in(k).id].size();
    }
    if (all_const) {
      rank = in(0).c.shape.size();
      const int64_t ax = norm_axis(attr_int("axis", 0), std::max<size_t>(rank, 1));
      Shape o = in(0).c.shape;
      if (o.empty()) unsupported("cannot concatenate scalars");
      o[ax] = 0;
      for (int k = 0; k < nin; ++k) o[ax] += in(k).c.shape[ax];
      Const c;
      c.shape = o;
      c.is_int = in(0).c.is_int;
      const int64_t outer = checked_numel(Shape(o.begin(), o.begin() + ax), "concat");
      for (int64_t ou = 0; ou < outer; ++ou)
        for (int k = 0; k < nin; ++k) {
          const Const& s = in(k).c;
          if (s.shape.size() != rank) unsupported("inputs differ in rank");
          const int64_t chunk = s.numel() / std::max<int64_t>(outer, 1);
          for (int64_t j = 0; j < chunk; ++j) {
            if (c.is_int) c.i.push_back(s.iat(ou * chunk + j));
            else c.f.push_back(static_cast<float>(s.at(ou * chunk + j)));
          }
        }
      set_out_const(std::move(c));
      return;
    }
    const int64_t ax = norm_axis(attr_int("axis", 0), rank);
    if (ax == 0) unsupported("concatenation along the batch axis 0 is not supported");
    std::vector<int> ids;
    for (int k = 0; k < nin; ++k)
      ids.push_back(in(k).is_const ? const_node(in(k).c, rank, "_const" + std::to_string(k)) : in(k).id);
    if (ids.size() == 1) {
      set_out_id(ids[0]);
      return;
    }
    set_out_id(add("concat", Attrs().set("axis", ax), ids));
  }

  void binary(const std::string& op) {
    allow_attrs({"broadcast", "axis"});
    if (attr("axis")) unsupported("the legacy 'axis' broadcast attribute is not supported");
    const Val& a = in(0);
    const Val& b = in(1);
    if (a.is_const && b.is_const) {
      std::function<double(double, double)> fn;
      bool keep_int = true;
      if (op == "add") fn = [](double u, double v) { return u + v; };
      else if (op == "mul") fn = [](double u, double v) { return u * v; };
      else if (op == "sub") fn = [](double u, double v) { return u - v; };
      else {
        keep_int = a.c.is_int && b.c.is_int;
        fn = [keep_int](double u, double v) { return keep_int ? std::floor(u / v) : u / v; };
      }
      set_out_const(fold_binary(a.c, b.c, fn, keep_int));
      return;
    }
    if (op == "sub" || op == "div") unsupported("only on constants (shape computations)");
    if (!a.is_const && !b.is_const) {
      if (shapes_[a.id] != shapes_[b.id])
        unsupported("broadcasting between two runtime tensors " + shape_str(shapes_[a.id]) + " and " +
                    shape_str(shapes_[b.id]) + " is not supported");
      set_out_id(add(op, Attrs(), {a.id, b.id}));
      return;
    }
    const Val& x = a.is_const ? b : a;
    const Const& c = a.is_const ? a.c : b.c;
    const Shape& xs = shapes_[x.id];
    if (c.shape.size() > xs.size())
      unsupported("the constant " + shape_str(c.shape) + " has a higher rank than the runtime tensor " + shape_str(xs));
    const Shape cs = aligned(c.shape, xs.size());
    for (size_t k = 0; k < xs.size(); ++k)
      if (cs[k] != 1 && cs[k] != xs[k])
        unsupported("the constant " + shape_str(c.shape) + " does not broadcast to the runtime tensor " +
                    shape_str(xs) + " (the result would be larger than it)");
    const int id = add("eltwise_const", Attrs().set("op", op).set("value_shape", cs), {x.id});
    set_param(id, "value", c.tensor().reshaped(cs));
    set_out_id(id);
  }
  void add_op() { binary("add"); }
  void mul_op() { binary("mul"); }
  void sub_op() { binary("sub"); }
  void div_op() { binary("div"); }

  void flatten() {
    allow_attrs({"axis"});
    const Shape& s = shape_of(0);
    const int64_t r = static_cast<int64_t>(s.size());
    int64_t ax = attr_int("axis", 1);
    if (ax < -r || ax > r) unsupported("axis " + std::to_string(ax) + " is out of range");
    if (ax < 0) ax += r;
    const Shape o{prod_of(s, 0, ax), prod_of(s, ax, r)};
    if (in(0).is_const) {
      Const c = in(0).c;
      c.shape = o;
      set_out_const(std::move(c));
      return;
    }
    if (ax == 0 || o[0] != s[0])
      unsupported("axis " + std::to_string(ax) + " on " + shape_str(s) +
                  " would merge the batch dimension with others");
    set_out_id(add("reshape", Attrs().set("shape", Shape{o[1]}), {din(0)}));
  }
  static int64_t prod_of(const Shape& s, int64_t from, int64_t to) {
    int64_t p = 1;
    for (int64_t k = from; k < to; ++k) p *= s[k];
    return p;
  }

  // A runtime value reshaped to the full shape `o` (batch first, must be kept).
  void reshape_to(const Shape& o) {
    const int x = din(0);
    const Shape& s = shapes_[x];
    if (o.empty() || o[0] != s[0])
      unsupported("reshaping " + shape_str(s) + " to " + shape_str(o) + " changes the batch dimension");
    set_out_id(add("reshape", Attrs().set("shape", Shape(o.begin() + 1, o.end())), {x}));
  }

  void reshape() {
    allow_attrs({"allowzero", "shape"});
    if (attr("shape")) unsupported("the opset-1 'shape' attribute is not supported");
    const bool allowzero = attr_int("allowzero", 0) != 0;
    const Shape& s = shape_of(0);
    std::vector<int64_t> t = cin(1, "the target shape").ints();
    int64_t known = 1, infer_at = -1;
    for (size_t k = 0; k < t.size(); ++k) {
      if (t[k] == 0 && !allowzero) {
        if (k >= s.size()) unsupported("a 0 in the target shape beyond the input rank");
        t[k] = s[k];
      }
      if (t[k] == -1) {
        if (infer_at >= 0) unsupported("more than one -1 in the target shape");
        infer_at = static_cast<int64_t>(k);
      } else if (t[k] < 0) {
        unsupported("negative dimension in the target shape " + shape_str(t));
      } else {
        known *= t[k];
      }
    }
    const int64_t total = checked_numel(s, "input");
    if (infer_at >= 0) {
      if (known == 0 || total % known != 0) unsupported("cannot infer -1 reshaping " + shape_str(s));
      t[infer_at] = total / known;
    }
    if (checked_numel(t, "target") != total)
      unsupported("cannot reshape " + shape_str(s) + " to " + shape_str(t));
    if (in(0).is_const) {
      Const c = in(0).c;
      c.shape = t;
      set_out_const(std::move(c));
      return;
    }
    for (int64_t d : t)
      if (d == 0) unsupported("zero-sized dimensions are not supported");
    reshape_to(t);
  }

  void shape() {
    allow_attrs({"start", "end"});
    const Shape& s = shape_of(0);
    const int64_t r = static_cast<int64_t>(s.size());
    int64_t b = attr_int("start", 0), e = attr_int("end", r);
    if (b < 0) b += r;
    if (e < 0) e += r;
    b = std::clamp<int64_t>(b, 0, r);
    e = std::clamp<int64_t>(e, 0, r);
    std::vector<int64_t> v;
    for (int64_t k = b; k < e; ++k) v.push_back(s[k]);
    set_out_const(Const::ints_of({static_cast<int64_t>(v.size())}, v));
  }

  void gather() {
    allow_attrs({"axis"});
    const Const& d = cin(0, "data (a runtime Gather is not supported)");
    const Const& idx = cin(1, "indices");
    const int64_t r = static_cast<int64_t>(d.shape.size());
    if (r == 0) unsupported("data must not be a scalar");
    const int64_t ax = norm_axis(attr_int("axis", 0), static_cast<size_t>(r));
    Shape o(d.shape.begin(), d.shape.begin() + ax);
    o.insert(o.end(), idx.shape.begin(), idx.shape.end());
    o.insert(o.end(), d.shape.begin() + ax + 1, d.shape.end());
    const int64_t outer = prod_of(d.shape, 0, ax), inner = prod_of(d.shape, ax + 1, r), dim = d.shape[ax];
    Const c;
    c.shape = o;
    c.is_int = d.is_int;
    for (int64_t ou = 0; ou < outer; ++ou)
      for (int64_t j = 0; j < idx.numel(); ++j) {
        int64_t q = idx.iat(j);
        if (q < 0) q += dim;
        if (q < 0 || q >= dim) unsupported("index " + std::to_string(idx.iat(j)) + " out of range");
        for (int64_t k = 0; k < inner; ++k) {
          const int64_t src = (ou * dim + q) * inner + k;
          if (c.is_int) c.i.push_back(d.iat(src)); else c.f.push_back(static_cast<float>(d.at(src)));
        }
      }
    set_out_const(std::move(c));
  }

  std::vector<int64_t> axes_operand() {
    if (opset_ < 13) {
      allow_attrs({"axes"});
      return attr_ints("axes", {});
    }
    allow_attrs({});
    if (!has_input(1)) return {};
    return cin(1, "axes").ints();
  }
  void unsqueeze() {
    auto axes = axes_operand();
    if (axes.empty()) unsupported("axes are required");
    const Shape& s = shape_of(0);
    const int64_t r = static_cast<int64_t>(s.size() + axes.size());
    std::vector<bool> is_new(static_cast<size_t>(r), false);
    for (int64_t a : axes) {
      const int64_t n = norm_axis(a, static_cast<size_t>(r));
      if (is_new[n]) unsupported("repeated axis");
      is_new[n] = true;
    }
    Shape o;
    size_t k = 0;
    for (int64_t d = 0; d < r; ++d) o.push_back(is_new[d] ? 1 : s[k++]);
    if (in(0).is_const) {
      Const c = in(0).c;
      c.shape = o;
      set_out_const(std::move(c));
      return;
    }
    reshape_to(o);
  }
  void squeeze() {
    auto axes = axes_operand();
    const Shape& s = shape_of(0);
    std::vector<bool> drop(s.size(), false);
    if (axes.empty()) {
      for (size_t k = 0; k < s.size(); ++k) drop[k] = s[k] == 1;
    } else {
      for (int64_t a : axes) {
        const int64_t n = norm_axis(a, s.size());
        if (s[n] != 1) unsupported("axis " + std::to_string(a) + " has size " + std::to_string(s[n]) + ", not 1");
        drop[n] = true;
      }
    }
    Shape o;
    for (size_t k = 0; k < s.size(); ++k)
      if (!drop[k]) o.push_back(s[k]);
    if (in(0).is_const) {
      Const c = in(0).c;
      c.shape = o;
      set_out_const(std::move(c));
      return;
    }
    reshape_to(o);
  }
  void cast() {
    allow_attrs({"to", "saturate"});
    const Const& c0 = cin(0, "input (Cast is supported only in shape computations)");
    const int to = static_cast<int>(attr_int("to", 0));
    Const c;
    c.shape = c0.shape;
    if (is_int_type(to)) {
      c.is_int = true;
      for (int64_t k = 0; k < c0.numel(); ++k) c.i.push_back(static_cast<int64_t>(c0.at(k)));
    } else if (to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE) {
      for (int64_t k = 0; k < c0.numel(); ++k) c.f.push_back(static_cast<float>(c0.at(k)));
    } else {
      unsupported("cast to type " + std::to_string(to) + " is not supported");
    }
    set_out_const(std::move(c));
  }

  void softmax() {
    allow_attrs({"axis"});
    const int x = din(0);
    const Shape& s = shapes_[x];
    const int64_t r = static_cast<int64_t>(s.size());
    const int64_t ax = norm_axis(attr_int("axis", opset_ < 13 ? 1 : -1), s.size());
    if (ax == 0) unsupported("softmax over the batch axis 0 is not supported");
    if (opset_ >= 13 || ax == r - 1) {
      set_out_id(add("softmax", Attrs().set("axis", ax), {x}));
      return;
    }
    // Opsets < 13: softmax over the flattened dims [axis, r) of the coerced 2-D view.
    const int64_t before = prod_of(s, 1, ax), after = prod_of(s, ax, r);
    const int a = add("reshape", Attrs().set("shape", Shape{before, after}), {x}, "_2d");
    const int b = add("softmax", Attrs().set("axis", 2), {a});
    set_out_id(add("reshape", Attrs().set("shape", Shape(s.begin() + 1, s.end())), {b}, "_nd"));
  }

  void dropout() {
    if (opset_ < 12) {
      allow_attrs({"ratio", "is_test", "consumed_inputs"});
    } else {
      allow_attrs({"seed"});
      if (has_input(2) && cin(2, "training_mode").at(0) != 0.0)
        unsupported("training_mode = true is not supported (inference import)");
    }
    only_first_output_used();
    set_out(in(0));
  }
  void identity() {
    allow_attrs({});
    set_out(in(0));
  }

  void pad() {
    std::string mode = attr_str("mode", "constant");
    std::vector<int64_t> pads;
    double value = 0.0;
    if (opset_ < 11) {
      allow_attrs({"mode", "pads", "value", "paddings"});
      pads = attr_ints("pads", attr_ints("paddings", {}));
      value = attr_float("value", 0.0);
    } else {
      allow_attrs({"mode"});
      pads = cin(1, "pads").ints();
      if (has_input(2)) value = cin(2, "constant_value").at(0);
      if (has_input(3)) unsupported("the axes input is not supported");
    }
    const int x = din(0);
    const Shape& s = shapes_[x];
    const size_t r = s.size();
    if (pads.size() != 2 * r) unsupported("pads has " + std::to_string(pads.size()) + " entries for rank " + std::to_string(r));
    if (pads[0] != 0 || pads[r] != 0) unsupported("padding the batch dimension is not supported");
    std::vector<int64_t> p;
    for (size_t k = 1; k < r; ++k) p.push_back(pads[k]);
    for (size_t k = 1; k < r; ++k) p.push_back(pads[r + k]);
    for (int64_t v : p)
      if (v < 0) unsupported("negative pads (cropping) are not supported");
    if (mode != "constant" && mode != "edge" && mode != "reflect") unsupported("mode '" + mode + "' is not supported");
    set_out_id(add("pad", Attrs().set("pads", p).set("mode", mode).set("value", value), {x}));
  }

  void constant() {
    if (node_->attribute_size() != 1) unsupported("expects exactly one value attribute");
    const auto& a = node_->attribute(0);
    if (a.name() == "value") set_out_const(from_tensor_proto(a.t(), base_));
    else if (a.name() == "value_float") set_out_const(Const::floats_of({}, {a.f()}));
    else if (a.name() == "value_floats")
      set_out_const(Const::floats_of({a.floats_size()}, std::vector<float>(a.floats().begin(), a.floats().end())));
    else if (a.name() == "value_int") set_out_const(Const::ints_of({}, {a.i()}));
    else if (a.name() == "value_ints")
      set_out_const(Const::ints_of({a.ints_size()}, std::vector<int64_t>(a.ints().begin(), a.ints().end())));
    else unsupported("attribute '" + a.name() + "' is not supported");
  }

  const onnx::ModelProto& mp_;
  std::string base_, file_;
  const OnnxImportOptions& opt_;
  int64_t opset_ = 0;
  Shape input_shape_;
  int64_t batch_ = 1;
  Model m_;
  std::map<std::string, Val> vals_;
  std::vector<Shape> shapes_;   // full shape of each runtime value at the declared batch
  std::set<std::string> used_names_, needed_;
};

std::string dir_of(const std::string& path) {
  const auto p = path.find_last_of('/');
  return p == std::string::npos ? "." : path.substr(0, p);
}

}  // namespace

Model import_onnx_bytes(const std::string& bytes, const std::string& base_dir, const std::string& name,
                        const OnnxImportOptions& opt, OnnxImportInfo* info) {
  onnx::ModelProto mp;
  if (bytes.empty()) fail_file(name, "the file is empty");
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) fail_file(name, "larger than 2 GiB; use external data");
  if (!mp.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail_file(name, "not a valid ONNX model (protobuf parse failed: malformed or truncated)");
  if (mp.ir_version() < 3) fail_file(name, "IR version " + std::to_string(mp.ir_version()) + " is too old (3 or later)");
  Importer im(mp, base_dir, name, opt);
  return im.run(info);
}

Tensor read_onnx_tensor(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("ONNX tensor '" + path + "': cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  onnx::TensorProto t;
  if (!t.ParseFromString(ss.str())) throw Error("ONNX tensor '" + path + "': not a valid TensorProto");
  try {
    return from_tensor_proto(t, dir_of(path)).tensor();
  } catch (const Error& e) {
    throw Error("ONNX tensor '" + path + "': " + e.what());
  }
}

Model import_onnx(const std::string& path, const OnnxImportOptions& opt, OnnxImportInfo* info) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("ONNX '" + path + "': cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return import_onnx_bytes(ss.str(), dir_of(path), path, opt, info);
}

}  // namespace deftnn
