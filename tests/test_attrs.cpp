// Attrs (typed layer hyper-parameters), Layer::param and the layer registry.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/layer.h"

using namespace deftnn;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(AttrsGet, TypedGettersAndDefaults) {
  Attrs a;
  a.set("i", 3).set("l", int64_t{7}).set("f", 0.5).set("v", std::vector<int64_t>{2, 4}).set("s", "xavier");
  EXPECT_EQ(a.get_int("i"), 3);
  EXPECT_EQ(a.get_int("l"), 7);
  EXPECT_EQ(a.get_int("missing", 9), 9);
  EXPECT_DOUBLE_EQ(a.get_float("f"), 0.5);
  EXPECT_DOUBLE_EQ(a.get_float("i"), 3.0);   // an int where a float is asked for
  EXPECT_DOUBLE_EQ(a.get_float("missing", 1e-4), 1e-4);
  EXPECT_EQ(a.get_ints("v"), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(a.get_ints("i"), (std::vector<int64_t>{3}));   // a single int is a list of one
  EXPECT_EQ(a.get_ints("missing", {1, 1}), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(a.get_str("s"), "xavier");
  EXPECT_EQ(a.get_str("missing", "d"), "d");
  EXPECT_TRUE(a.has("s"));
  EXPECT_FALSE(a.has("missing"));
  EXPECT_EQ(a.items().size(), 5u);
  // set() overwrites.
  a.set("i", 4);
  EXPECT_EQ(a.get_int("i"), 4);
}

TEST(AttrsGet, ErrorsNameTheKeyAndProblem) {
  Attrs a;
  a.set("f", 0.5).set("v", std::vector<int64_t>{2, 4}).set("s", "x");
  std::string m = error_of([&] { a.get_int("k"); });
  EXPECT_NE(m.find("'k'"), std::string::npos) << m;
  EXPECT_NE(m.find("missing"), std::string::npos) << m;
  m = error_of([&] { a.get_int("f"); });
  EXPECT_NE(m.find("'f'"), std::string::npos) << m;
  EXPECT_NE(m.find("float"), std::string::npos) << m;
  m = error_of([&] { a.get_int("v", 1); });   // present with the wrong type: not the default
  EXPECT_NE(m.find("'v'"), std::string::npos) << m;
  m = error_of([&] { a.get_float("s"); });
  EXPECT_NE(m.find("string"), std::string::npos) << m;
  m = error_of([&] { a.get_ints("f"); });
  EXPECT_NE(m.find("'f'"), std::string::npos) << m;
  m = error_of([&] { a.get_str("v"); });
  EXPECT_NE(m.find("list"), std::string::npos) << m;
  EXPECT_EQ(error_of([&] { a.get_float("f"); }), "<no error>");
}

TEST(AttrsKeys, CheckKeysNamesLayerAndKey) {
  Attrs a;
  a.set("kernel", 3).set("strid", 2);
  std::string m = error_of([&] { a.check_keys("conv", {"kernel", "stride"}); });
  EXPECT_NE(m.find("conv"), std::string::npos) << m;
  EXPECT_NE(m.find("'strid'"), std::string::npos) << m;
  EXPECT_NE(m.find("stride"), std::string::npos) << m;   // lists what is allowed
  EXPECT_EQ(error_of([&] { a.check_keys("conv", {"kernel", "strid"}); }), "<no error>");
  EXPECT_NE(error_of([&] { a.check_keys("add", {}); }).find("add"), std::string::npos);
}

TEST(AttrsStr, ReadableSortedDump) {
  Attrs a;
  a.set("stride", 1).set("kernel", std::vector<int64_t>{5, 5});
  EXPECT_EQ(a.str(), "kernel=[5, 5] stride=1");
  Attrs b;
  b.set("alpha", 0.0001).set("k", 1.0).set("weight_filler", "msra");
  EXPECT_EQ(b.str(), "alpha=0.0001 k=1.0 weight_filler=msra");
  EXPECT_EQ(Attrs().str(), "");
  // A long list (an eliminated layer's `retained`) is cut for summaries, with its length.
  Attrs c;
  c.set("retained", std::vector<int64_t>{9, 8, 7, 6, 5, 4});
  EXPECT_EQ(c.str(5), "retained=[9, 8, 7, ... (6 values)]");
  EXPECT_EQ(c.str(6), "retained=[9, 8, 7, 6, 5, 4]");
  EXPECT_EQ(c.str(), "retained=[9, 8, 7, 6, 5, 4]");
}

TEST(AttrsRegistry, LayerTypesAndFactory) {
  const std::vector<std::string> want = {"conv", "fc", "relu", "maxpool", "avgpool", "lrn",
                                         "dropout", "softmax", "flatten", "batchnorm", "concat",
                                         "add",
                                         // src/ops/elementwise.cpp (layers for ONNX models)
                                         "clip", "sigmoid", "mul", "eltwise_const", "reshape", "pad",
                                         "constant"};
  std::vector<std::string> got = layer_types();
  EXPECT_EQ(got.size(), want.size());
  for (const auto& t : want) {
    EXPECT_NE(std::find(got.begin(), got.end(), t), got.end()) << t;
  }
  // Every type constructs from minimal attributes and reports its registry name.
  auto minimal = [](const std::string& t) {
    Attrs a;
    if (t == "conv") a.set("out_channels", 2).set("kernel", 3);
    if (t == "fc") a.set("out_features", 2);
    if (t == "maxpool" || t == "avgpool") a.set("kernel", 2);
    if (t == "eltwise_const") a.set("op", "add").set("value_shape", Shape{1, 2});
    if (t == "constant") a.set("value_shape", Shape{1, 2});
    if (t == "reshape") a.set("shape", Shape{2});
    if (t == "pad") a.set("pads", std::vector<int64_t>{0, 0});
    return a;
  };
  for (const auto& t : got) {
    auto l = make_layer(t, minimal(t));
    ASSERT_NE(l, nullptr);
    EXPECT_EQ(l->type(), t);
    EXPECT_EQ(l->attrs().items().size(), minimal(t).items().size());
  }
  std::string m = error_of([] { make_layer("pool", Attrs()); });
  EXPECT_NE(m.find("unknown layer type 'pool'"), std::string::npos) << m;
  EXPECT_NE(m.find("maxpool"), std::string::npos) << m;
  // Attribute errors from getters are prefixed with the layer type.
  m = error_of([] { make_layer("fc", Attrs().set("out_features", 2.5)); });
  EXPECT_EQ(m.rfind("fc: ", 0), 0u) << m;
  EXPECT_NE(m.find("'out_features'"), std::string::npos) << m;
}

TEST(AttrsParam, LookupByName) {
  auto l = make_layer("fc", Attrs().set("out_features", 3));
  EXPECT_EQ(l->param("weight"), nullptr);   // created by infer
  l->infer({{2, 4}});
  ASSERT_NE(l->param("weight"), nullptr);
  ASSERT_NE(l->param("bias"), nullptr);
  EXPECT_EQ(l->param("weight")->name, "weight");
  EXPECT_EQ(l->param("nope"), nullptr);
  EXPECT_EQ(l->params().size(), 2u);
  // Zero-filled on creation.
  for (int64_t i = 0; i < l->param("weight")->value.numel(); ++i) EXPECT_EQ(l->param("weight")->value[i], 0.0f);
  // Without bias: only the weight.
  auto nb = make_layer("fc", Attrs().set("out_features", 3).set("bias", 0));
  nb->infer({{2, 4}});
  EXPECT_EQ(nb->params().size(), 1u);
  EXPECT_EQ(nb->param("bias"), nullptr);
}

}  // namespace
