// ONNX export: deftnn Model -> ModelProto (opset 13, IR 7) with a symbolic batch dimension.
// Eliminated synapses (conv/fc with attr `retained`) are written back as zeros in a full-size
// weight; the stored truncated weights already carry the K/(K-D) scale.
#include <onnx/onnx_pb.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "deftnn/error.h"
#include "deftnn/io.h"
#include "deftnn/onnx.h"
#include "ops/common.h"

namespace deftnn {
namespace {

class Exporter {
 public:
  Exporter(const Model& m, const OnnxExportOptions& opt) : m_(m), opt_(opt) {}

  std::string run() {
    onnx::ModelProto mp;
    mp.set_ir_version(7);
    mp.set_producer_name(opt_.producer);
    mp.set_producer_version("0.1.0");
    auto* os = mp.add_opset_import();
    os->set_domain("");
    os->set_version(13);
    g_ = mp.mutable_graph();
    g_->set_name("deftnn");
    check(!m_.nodes().empty(), "ONNX export: the model has no nodes");

    shapes_ = m_.value_shapes(1);
    names_.push_back(opt_.input_name);
    used_.insert(opt_.input_name);
    add_value_info(g_->add_input(), opt_.input_name, shapes_[0]);
    for (size_t k = 0; k < m_.nodes().size(); ++k) {
      const Node& n = m_.nodes()[k];
      const bool last = k + 1 == m_.nodes().size();
      out_ = last ? opt_.output_name : unique(n.name);
      try {
        node(n, static_cast<int>(k));
      } catch (const Error& e) {
        throw Error("ONNX export: node '" + n.name + "' (" + n.layer->type() + "): " + e.what());
      }
      names_.push_back(out_);
    }
    add_value_info(g_->add_output(), opt_.output_name, shapes_.back());
    std::string bytes;
    if (!mp.SerializeToString(&bytes)) throw Error("ONNX export: serialisation failed");
    return bytes;
  }

 private:
  std::string unique(const std::string& name) {
    // (Not `s = "v"` on an empty parameter: GCC 12 then warns a false -Wrestrict, bug 105329.)
    const std::string s = name.empty() ? std::string("v") : name;
    std::string n = s;
    for (int k = 1; used_.count(n); ++k) n = s + "_" + std::to_string(k);
    used_.insert(n);
    return n;
  }
  void add_value_info(onnx::ValueInfoProto* vi, const std::string& name, const Shape& s) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto* sh = tt->mutable_shape();
    for (size_t k = 0; k < s.size(); ++k) {
      auto* d = sh->add_dim();
      if (k == 0) d->set_dim_param("N"); else d->set_dim_value(s[k]);
    }
  }
  std::string init(const std::string& name, const Shape& s, const float* data) {
    const std::string n = unique(name);
    auto* t = g_->add_initializer();
    t->set_name(n);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : s) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(data), sizeof(float) * static_cast<size_t>(shape_numel(s))));
    return n;
  }
  std::string init_ints(const std::string& name, const std::vector<int64_t>& v) {
    const std::string n = unique(name);
    auto* t = g_->add_initializer();
    t->set_name(n);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
    return n;
  }
  onnx::NodeProto* op(const std::string& type, const std::vector<std::string>& in, const std::string& out,
                      const std::string& name) {
    auto* n = g_->add_node();
    n->set_op_type(type);
    n->set_name(name);
    for (const auto& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void ints(onnx::NodeProto* n, const std::string& k, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void int1(onnx::NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void flt(onnx::NodeProto* n, const std::string& k, double v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void str(onnx::NodeProto* n, const std::string& k, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static const Param& need(const Layer& l, const std::string& name) {
    for (const auto& p : l.params())
      if (p.name == name) return p;
    throw Error("has no parameter '" + name + "'");
  }
  static const Param* maybe(const Layer& l, const std::string& name) {
    for (const auto& p : l.params())
      if (p.name == name) return &p;
    return nullptr;
  }

  // Full-size weight [O, K] from a truncated [O, K'] one whose column p of group g (O/groups
  // rows each) multiplies original row retained[g * K' + p]; eliminated synapses are zeros.
  static std::vector<float> expand(const Tensor& w, const std::vector<int64_t>& retained, int64_t O,
                                   int64_t K, int64_t groups) {
    const int64_t kept = w.numel() / O;
    check(static_cast<int64_t>(retained.size()) == kept * groups,
          "attribute 'retained' has " + std::to_string(retained.size()) + " entries for " +
              std::to_string(groups) + " group(s) of " + std::to_string(kept));
    std::vector<float> full(static_cast<size_t>(O * K), 0.0f);
    const int64_t og = O / groups;
    for (int64_t o = 0; o < O; ++o) {
      const int64_t g = o / og;
      for (int64_t p = 0; p < kept; ++p) {
        const int64_t r = retained[g * kept + p];
        check(r >= 0 && r < K, "attribute 'retained' has row " + std::to_string(r) + " outside [0, " + std::to_string(K) + ")");
        full[o * K + r] = w[o * kept + p];
      }
    }
    return full;
  }

  void node(const Node& n, int k) {
    const Layer& l = *n.layer;
    const Attrs& a = l.attrs();
    const std::string t = l.type();
    std::vector<std::string> in;
    for (int v : n.inputs) in.push_back(names_[v]);
    const Shape& xs = shapes_[n.inputs[0]];
    const Shape& ys = shapes_[k + 1];
    if (t == "conv") {
      const auto kern = ops::get_hw(a, t, "kernel");
      const auto st = ops::get_hw(a, t, "stride", {1, 1});
      const auto dil = ops::get_hw(a, t, "dilation", {1, 1});
      const auto p = ops::get_pads(a, t);
      const int64_t groups = a.get_int("groups", 1), O = a.get_int("out_channels");
      const Shape ws{O, xs[1] / groups, kern.h, kern.w};
      const Param& w = need(l, "weight");
      std::string wn;
      if (a.has("retained")) {
        auto full = expand(w.value, a.get_ints("retained"), O, ws[1] * ws[2] * ws[3], groups);
        wn = init(n.name + ".weight", ws, full.data());
      } else {
        check(w.value.numel() == shape_numel(ws), "weight " + shape_str(w.value.shape()) + " does not fit " + shape_str(ws));
        wn = init(n.name + ".weight", ws, w.value.data());
      }
      std::vector<std::string> ins{in[0], wn};
      if (const Param* b = maybe(l, "bias")) ins.push_back(init(n.name + ".bias", {O}, b->value.data()));
      auto* c = op("Conv", ins, out_, n.name);
      ints(c, "kernel_shape", {kern.h, kern.w});
      ints(c, "strides", {st.h, st.w});
      ints(c, "dilations", {dil.h, dil.w});
      ints(c, "pads", {p.t, p.l, p.b, p.r});
      int1(c, "group", groups);
    } else if (t == "fc") {
      const int64_t O = a.get_int("out_features");
      int64_t I = 1;
      for (size_t d = 1; d < xs.size(); ++d) I *= xs[d];
      std::string x = in[0];
      if (xs.size() != 2) {
        x = unique(n.name + "_flat");
        int1(op("Flatten", {in[0]}, x, n.name + "_flatten"), "axis", 1);
      }
      const Param& w = need(l, "weight");
      std::string wn;
      if (a.has("retained")) {
        auto full = expand(w.value, a.get_ints("retained"), O, I, 1);
        wn = init(n.name + ".weight", {O, I}, full.data());
      } else {
        check(w.value.numel() == O * I, "weight " + shape_str(w.value.shape()) + " does not fit [" +
                                            std::to_string(O) + ", " + std::to_string(I) + "]");
        wn = init(n.name + ".weight", {O, I}, w.value.data());
      }
      std::vector<std::string> ins{x, wn};
      if (const Param* b = maybe(l, "bias")) ins.push_back(init(n.name + ".bias", {O}, b->value.data()));
      int1(op("Gemm", ins, out_, n.name), "transB", 1);
    } else if (t == "relu") {
      const double s = a.get_float("negative_slope", 0.0);
      if (s == 0.0) op("Relu", in, out_, n.name);
      else flt(op("LeakyRelu", in, out_, n.name), "alpha", s);
    } else if (t == "maxpool" || t == "avgpool") {
      if (a.get_int("global", 0)) {
        op(t == "maxpool" ? "GlobalMaxPool" : "GlobalAveragePool", in, out_, n.name);
        return;
      }
      const auto kern = ops::get_hw(a, t, "kernel");
      const auto st = ops::get_hw(a, t, "stride", {1, 1});
      const auto p = ops::get_pads(a, t);
      auto* c = op(t == "maxpool" ? "MaxPool" : "AveragePool", in, out_, n.name);
      ints(c, "kernel_shape", {kern.h, kern.w});
      ints(c, "strides", {st.h, st.w});
      ints(c, "pads", {p.t, p.l, p.b, p.r});
      int1(c, "ceil_mode", a.get_int("ceil_mode", 1));
      if (t == "avgpool") int1(c, "count_include_pad", a.get_int("count_include_pad", 1));
    } else if (t == "lrn") {
      auto* c = op("LRN", in, out_, n.name);
      int1(c, "size", a.get_int("size", 5));
      flt(c, "alpha", a.get_float("alpha", 1e-4));
      flt(c, "beta", a.get_float("beta", 0.75));
      flt(c, "bias", a.get_float("k", 1.0));
    } else if (t == "dropout") {
      op("Identity", in, out_, n.name);
    } else if (t == "softmax") {
      int1(op("Softmax", in, out_, n.name), "axis", a.get_int("axis", 1));
    } else if (t == "flatten") {
      int1(op("Flatten", in, out_, n.name), "axis", a.get_int("axis", 1));
    } else if (t == "batchnorm") {
      const int64_t C = xs[1];
      std::vector<std::string> ins{in[0]};
      for (const char* p : {"scale", "shift", "mean", "var"})
        ins.push_back(init(n.name + "." + p, {C}, need(l, p).value.data()));
      flt(op("BatchNormalization", ins, out_, n.name), "epsilon", a.get_float("eps", 1e-5));
    } else if (t == "concat") {
      int1(op("Concat", in, out_, n.name), "axis", a.get_int("axis", 1));
    } else if (t == "add") {
      op(in.size() == 2 ? "Add" : "Sum", in, out_, n.name);
    } else if (t == "mul") {
      op("Mul", in, out_, n.name);
    } else if (t == "sigmoid") {
      op("Sigmoid", in, out_, n.name);
    } else if (t == "clip") {
      std::vector<std::string> ins{in[0]};
      float lo = static_cast<float>(a.get_float("min", -3.4028234663852886e38));
      float hi = static_cast<float>(a.get_float("max", 3.4028234663852886e38));
      ins.push_back(init(n.name + ".min", {}, &lo));
      ins.push_back(init(n.name + ".max", {}, &hi));
      op("Clip", ins, out_, n.name);
    } else if (t == "eltwise_const") {
      const Param& v = need(l, "value");
      Shape vs = v.value.shape();
      check(!vs.empty() && vs[0] == 1, "a constant that varies along the batch has no ONNX equivalent "
                                       "with a symbolic batch");
      const std::string c = init(n.name + ".value", vs, v.value.data());
      op(a.get_str("op") == "mul" ? "Mul" : "Add", {in[0], c}, out_, n.name);
    } else if (t == "reshape") {
      std::vector<int64_t> s{-1};
      for (size_t d = 1; d < ys.size(); ++d) s.push_back(ys[d]);
      op("Reshape", {in[0], init_ints(n.name + ".shape", s)}, out_, n.name);
    } else if (t == "pad") {
      auto p = a.get_ints("pads");
      const size_t r = p.size() / 2;
      std::vector<int64_t> full{0};
      for (size_t d = 0; d < r; ++d) full.push_back(p[d]);
      full.push_back(0);
      for (size_t d = 0; d < r; ++d) full.push_back(p[r + d]);
      float v = static_cast<float>(a.get_float("value", 0.0));
      auto* c = op("Pad", {in[0], init_ints(n.name + ".pads", full), init(n.name + ".value", {}, &v)}, out_, n.name);
      str(c, "mode", a.get_str("mode", "constant"));
    } else {
      throw Error("layer type '" + t + "' has no ONNX export");
    }
  }

  const Model& m_;
  const OnnxExportOptions& opt_;
  onnx::GraphProto* g_ = nullptr;
  std::vector<Shape> shapes_;
  std::vector<std::string> names_;
  std::set<std::string> used_;
  std::string out_;
};

}  // namespace

std::string export_onnx_bytes(const Model& m, const OnnxExportOptions& opt) {
  Exporter e(m, opt);
  return e.run();
}

void export_onnx(const Model& m, const std::string& path, const OnnxExportOptions& opt) {
  const std::string bytes = export_onnx_bytes(m, opt);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error("ONNX export: cannot write '" + path + "'");
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw Error("ONNX export: cannot write '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("ONNX export: cannot write '" + path + "'");
}

}  // namespace deftnn
