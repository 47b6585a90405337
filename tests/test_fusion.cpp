// Inference fusion of a frozen model (Model::forward): conv + ReLU, conv + residual Add (+ ReLU),
// and conv chains written straight into their concat slice must give bit-identical outputs to
// the unfused graph, on every ISA path, at batch 1 (one GEMM per image, tile epilogue) and above
// (images side by side, fused copy-out), and must never apply in training.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "deftnn/gemm.h"
#include "deftnn/model.h"
#include "test_util.h"

using namespace deftnn;

namespace {

using test::IsaGuard;
using test::random_tensor;



Attrs conv(int out, int k, int stride = 1, int pad = 0, int bias = 1) {
  return Attrs().set("out_channels", out).set("kernel", k).set("stride", stride).set("pad", pad)
      .set("bias", bias);
}

// ResNet-like: residual blocks with the identity computed before the block's last conv, and a
// downsample conv that comes after it (the Add fuses into the later producer), a bias-less
// conv, a leaky ReLU (not fused) and a conv feeding two consumers (not fused).
Model residual_net() {
  Model m({3, 9, 11});
  int a = m.add("a", "conv", conv(8, 3, 1, 1));
  int ar = m.add("a_relu", "relu", Attrs(), {a});
  int b = m.add("b", "conv", conv(8, 3, 1, 1), {ar});
  int s1 = m.add("add1", "add", Attrs(), {b, ar});
  int r1 = m.add("relu1", "relu", Attrs(), {s1});
  int c = m.add("c", "conv", conv(16, 3, 2, 1), {r1});
  int cr = m.add("c_relu", "relu", Attrs(), {c});
  int d = m.add("d", "conv", conv(16, 3, 1, 1, 0), {cr});
  int ds = m.add("ds", "conv", conv(16, 1, 2, 0), {r1});
  int s2 = m.add("add2", "add", Attrs(), {d, ds});
  int r2 = m.add("relu2", "relu", Attrs(), {s2});
  int e = m.add("e", "conv", conv(12, 1), {r2});
  int el = m.add("e_leaky", "relu", Attrs().set("negative_slope", 0.1), {e});
  int f = m.add("f", "conv", conv(12, 3, 1, 1), {el});
  int g = m.add("g", "add", Attrs(), {f, f});   // f read twice: not fused
  m.add("pool", "avgpool", Attrs().set("global", 1), {g});
  m.add("fc", "fc", Attrs().set("out_features", 7));
  return m;
}

// SqueezeNet-like fire modules: expand convs (with and without ReLU) written into their slice of
// the concat, and a last ReLU whose output is the model output.
Model fire_net() {
  Model m({5, 13, 10});
  int s = m.add("squeeze", "conv", conv(6, 1));
  int sr = m.add("squeeze_relu", "relu", Attrs(), {s});
  int e1 = m.add("e1", "conv", conv(9, 1), {sr});
  int e1r = m.add("e1_relu", "relu", Attrs(), {e1});
  int e3 = m.add("e3", "conv", conv(7, 3, 1, 1), {sr});
  int e3r = m.add("e3_relu", "relu", Attrs(), {e3});
  int cat = m.add("cat", "concat", Attrs().set("axis", 1), {e1r, e3r});
  int p = m.add("pool", "maxpool", Attrs().set("kernel", 3).set("stride", 2), {cat});
  int f1 = m.add("f1", "conv", conv(5, 1), {p});
  int f3 = m.add("f3", "conv", conv(4, 3, 1, 1, 0), {p});
  int cat2 = m.add("cat2", "concat", Attrs().set("axis", 1), {f3, f1});
  int z = m.add("z", "conv", conv(11, 1), {cat2});
  m.add("z_relu", "relu", Attrs(), {z});
  return m;
}

// AlexNet-like grouped convs: at batch 1 each thread runs whole groups; the fused ReLU, residual
// Add (+ ReLU) and concat slice must hold there too.
Model grouped_net() {
  Model m({4, 9, 9});
  int a = m.add("a", "conv", conv(8, 3, 1, 1));
  int ar = m.add("a_relu", "relu", Attrs(), {a});
  int b = m.add("b", "conv", conv(8, 3, 1, 1).set("groups", 2), {ar});
  int br = m.add("b_relu", "relu", Attrs(), {b});
  int c = m.add("c", "conv", conv(8, 3, 1, 1).set("groups", 4), {br});
  int s = m.add("add", "add", Attrs(), {c, br});
  int r = m.add("relu", "relu", Attrs(), {s});
  int d = m.add("d", "conv", conv(6, 3, 1, 1).set("groups", 2), {r});
  int e = m.add("e", "conv", conv(4, 1), {r});
  m.add("cat", "concat", Attrs().set("axis", 1), {d, e});
  m.add("pool", "avgpool", Attrs().set("global", 1));
  m.add("fc", "fc", Attrs().set("out_features", 5));
  return m;
}

// Fully connected layers: the ReLU after an fc fuses (GEMV at batch 1, weights as A up to 64,
// X as A above, a reduced weight format, an eliminated fc);
// a leaky ReLU, an fc read twice and an Add after an fc (no residual fusion for fc) do not.
Model fc_net() {
  Model m({4, 5, 5});
  int a = m.add("a", "fc", Attrs().set("out_features", 90));
  int ar = m.add("a_relu", "relu", Attrs(), {a});
  std::vector<int64_t> kept;
  for (int64_t i = 89; i >= 0; i -= 2) kept.push_back(i);
  int b = m.add("b", "fc", Attrs().set("out_features", 80).set("retained", kept), {ar});
  int br = m.add("b_relu", "relu", Attrs(), {b});
  int c = m.add("c", "fc", Attrs().set("out_features", 64).set("format", "deft16"), {br});
  int cr = m.add("c_relu", "relu", Attrs(), {c});
  int d = m.add("d", "fc", Attrs().set("out_features", 70), {cr});
  int dr = m.add("d_relu", "relu", Attrs(), {d});
  int e = m.add("e", "fc", Attrs().set("out_features", 20), {dr});
  int el = m.add("e_leaky", "relu", Attrs().set("negative_slope", 0.1), {e});
  int f = m.add("f", "fc", Attrs().set("out_features", 20), {el});
  int g = m.add("g", "add", Attrs(), {f, e});   // fc then add: not fused
  m.add("h", "fc", Attrs().set("out_features", 9), {g});
  m.add("h_relu", "relu", Attrs());
  return m;
}

void expect_fused_equals_unfused(Model& m, int expect_skipped, const std::string& what,
                                 std::vector<int64_t> batches = {1, 2, 5}) {
  m.init_params(3);
  // Non-zero biases, so that the bias path is exercised.
  for (Node& n : m.nodes())
    if (Param* b = n.layer->param("bias")) {
      Rng r(11);
      for (int64_t i = 0; i < b->value.numel(); ++i) b->value[i] = static_cast<float>(r.normal());
    }
  std::vector<Isa> isas{Isa::portable};
  if (detected_isa() >= Isa::avx2) isas.push_back(Isa::avx2);
  if (detected_isa() >= Isa::avx512) isas.push_back(Isa::avx512);
  if (detected_isa() >= Isa::avx512_bf16) isas.push_back(Isa::avx512_bf16);
  IsaGuard guard;
  // The frozen model may run a 3x3 conv as Winograd (not bit-exact against the direct kernels
  // the unfrozen forward runs); fusion is checked on the direct kernels, Winograd's fused
  // output pass in test_winograd.cpp.
  test::WinogradPolicyGuard policy;
  set_winograd_policy(WinogradPolicy::off);
  for (Isa isa : isas) {
    set_active_isa(isa);
    for (int64_t batch : batches) {
      SCOPED_TRACE(what + " isa " + isa_name(isa) + " batch " + std::to_string(batch));
      Shape s{batch};
      s.insert(s.end(), m.input_shape().begin(), m.input_shape().end());
      const Tensor x = random_tensor(s, 7 + static_cast<uint64_t>(batch));
      m.freeze(false);
      const Tensor want = m.forward(x).clone();
      m.freeze(true);
      EXPECT_EQ(m.fused_nodes(), expect_skipped);
      for (int rep = 0; rep < 2; ++rep) {   // the second call reuses the packed weights and plan
        const Tensor got = m.forward(x).clone();
        ASSERT_EQ(got.shape(), want.shape());
        EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * static_cast<size_t>(got.numel())), 0);
      }
      m.set_fusion(false);
      EXPECT_EQ(m.fused_nodes(), 0);
      const Tensor off = m.forward(x).clone();
      EXPECT_EQ(std::memcmp(off.data(), want.data(), sizeof(float) * static_cast<size_t>(want.numel())), 0);
      m.set_fusion(true);
      m.freeze(false);
    }
  }
}

// One training step (forward, backward) of a and of b on x: bit-identical parameter gradients.
void expect_same_training_step(Model& a, Model& b, const Tensor& x) {
  Tensor dy = random_tensor(a.output_shape(x.dim(0)), 4);
  std::vector<Tensor> grads[2];
  int k = 0;
  for (Model* m : {&a, &b}) {
    m->zero_grad();
    m->forward(x, true);
    m->backward(dy);
    for (Node& n : m->nodes())
      for (Param& p : n.layer->params()) grads[k].push_back(p.grad.clone());
    ++k;
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_EQ(std::memcmp(grads[0][i].data(), grads[1][i].data(),
                          sizeof(float) * static_cast<size_t>(grads[0][i].numel())), 0);
}

}  // namespace

TEST(Fusion, ResidualBlocksMatchUnfusedExactly) {
  Model m = residual_net();
  // a_relu, add1 + relu1, c_relu, add2 + relu2: 6 nodes run inside their conv.
  expect_fused_equals_unfused(m, 6, "residual");
}

TEST(Fusion, ConcatSlicesMatchUnfusedExactly) {
  Model m = fire_net();
  // squeeze_relu, e1_relu, e3_relu, cat, cat2, z_relu.
  expect_fused_equals_unfused(m, 6, "fire");
}

TEST(Fusion, GroupedConvsMatchUnfusedExactly) {
  Model m = grouped_net();
  // a_relu, b_relu, add + relu, cat.
  expect_fused_equals_unfused(m, 5, "grouped");
}

TEST(Fusion, FullyConnectedReluMatchesUnfusedExactly) {
  Model m = fc_net();
  expect_fused_equals_unfused(m, 5, "fc", {1, 2, 5, 33, 70});
}

// A pruned fc run by the CSR kernel (frozen only, so compared with the frozen model unfused):
// the fused ReLU in its transposing store / after its SpMV.
TEST(Fusion, SparseFullyConnectedReluMatchesUnfusedExactly) {
  Model m({100});
  m.add("d", "fc", Attrs().set("out_features", 70));
  m.add("d_relu", "relu", Attrs());
  m.init_params(5);
  Layer& d = *m.nodes()[0].layer;
  Tensor& w = d.param("weight")->value;
  for (int64_t o = 0; o < 70; ++o)   // 10% density, 10 non-zeros a row: the auto policy's CSR
    for (int64_t k = 0; k < 100; ++k)
      if ((k * 7 + o) % 10 != 0) w[o * 100 + k] = 0.0f;
  Rng r(2);
  for (int64_t i = 0; i < 70; ++i) d.param("bias")->value[i] = static_cast<float>(r.normal());
  m.freeze(true);
  set_kernel_report_enabled(true);
  for (int64_t batch : {1, 3, 40}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const Tensor x = random_tensor({batch, 100}, 9);
    m.set_fusion(true);
    const Tensor fused = m.forward(x).clone();
    EXPECT_EQ(m.fused_nodes(), 1);
    EXPECT_NE(d.last_kernel().find("CSR"), std::string::npos) << d.last_kernel();
    EXPECT_NE(d.last_kernel().find("ReLU fused"), std::string::npos) << d.last_kernel();
    m.set_fusion(false);
    const Tensor plain = m.forward(x).clone();
    ASSERT_EQ(fused.shape(), plain.shape());
    EXPECT_EQ(std::memcmp(fused.data(), plain.data(), sizeof(float) * static_cast<size_t>(plain.numel())), 0);
    int negatives = 0;
    for (int64_t i = 0; i < fused.numel(); ++i) negatives += fused[i] < 0.0f;
    EXPECT_EQ(negatives, 0);
  }
  set_kernel_report_enabled(false);
}

TEST(Fusion, NeverAppliesInTraining) {
  // A training step after frozen (fused) inference gives exactly the gradients of a model that
  // was never frozen: every value backward needs is there. Also on a model left frozen after two
  // inference calls (the second ran on the memory plan's shared buffers, which the training
  // forward must drop: every activation gets its own storage again).
  for (bool stay_frozen : {false, true}) {
    SCOPED_TRACE(stay_frozen ? "left frozen" : "unfrozen");
    Model a = residual_net(), b = residual_net();
    a.init_params(5);
    b.init_params(5);
    const Tensor x = random_tensor({2, 3, 9, 11}, 3);
    a.freeze(true);
    a.forward(x);
    a.forward(x);
    const int64_t planned = a.activation_bytes();
    if (!stay_frozen) a.freeze(false);
    expect_same_training_step(a, b, x);
    EXPECT_EQ(a.activation_bytes(), b.activation_bytes());
    EXPECT_LT(planned, a.activation_bytes());
  }
}

// The activation memory plan (Model::set_memory_plan): after a fused forward, activations whose
// lifetimes do not overlap share buffers. Against the same model with the plan off: bit-identical
// outputs on every later call, batch changes (the plan is made again) included, and less
// activation memory.
TEST(MemoryPlan, SharesBuffersAndMatchesThePlanOffExactly) {
  test::WinogradPolicyGuard policy;
  set_winograd_policy(WinogradPolicy::off);
  const std::pair<const char*, Model (*)()> nets[] = {
      {"residual", residual_net}, {"fire", fire_net}, {"grouped", grouped_net}};
  for (const auto& [what, make] : nets) {
    SCOPED_TRACE(what);
    Model on = make(), off = make();
    on.init_params(9);
    off.init_params(9);
    on.freeze(true);
    off.freeze(true);
    off.set_memory_plan(false);
    auto batch_of = [&](int64_t batch) {
      Shape s{batch};
      s.insert(s.end(), on.input_shape().begin(), on.input_shape().end());
      return s;
    };
    int64_t bytes_on = 0, bytes_off = 0;
    for (int64_t batch : {1, 1, 3, 3, 1}) {
      const Tensor x = random_tensor(batch_of(batch), 20 + static_cast<uint64_t>(batch));
      const Tensor want = off.forward(x).clone();
      const Tensor got = on.forward(x).clone();
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * static_cast<size_t>(got.numel())), 0)
          << "batch " << batch;
      bytes_on = on.activation_bytes();
      bytes_off = off.activation_bytes();
    }
    EXPECT_GT(bytes_off, 0);
    EXPECT_LT(bytes_on, bytes_off);
    // Turned off mid-session: the values get their own storage again, same results.
    on.set_memory_plan(false);
    const Tensor x = random_tensor(batch_of(2), 5);
    const Tensor a = on.forward(x).clone(), b = off.forward(x).clone();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())), 0);
    // On again; a training forward in between materialises every value, and the next planned
    // inference releases the ones the fused run never touches: back to the planned size.
    on.set_memory_plan(true);
    on.forward(x);
    on.forward(x);
    const int64_t planned = on.activation_bytes();
    on.forward(x, true);
    EXPECT_GT(on.activation_bytes(), planned);
    on.forward(x);
    const Tensor c = on.forward(x).clone();
    EXPECT_EQ(on.activation_bytes(), planned);
    EXPECT_EQ(std::memcmp(c.data(), b.data(), sizeof(float) * static_cast<size_t>(c.numel())), 0);
  }
}
