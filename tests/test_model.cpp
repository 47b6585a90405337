// Model graph, zoo shapes, training loop and the command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "deftnn/data.h"
#include "deftnn/error.h"
#include "deftnn/io.h"
#include "deftnn/model.h"
#include "deftnn/optimize.h"
#include "deftnn/train.h"
#include "deftnn/zoo.h"
#include "test_util.h"

using namespace deftnn;

namespace {

using test::random_tensor;


// A synthetic, learnable 3-class problem: the class is which third of the image is bright.
Dataset stripes(int64_t n, uint64_t seed) {
  Dataset d;
  d.images = Tensor({n, 1, 12, 12});
  d.num_classes = 3;
  d.name = "stripes";
  Rng r(seed);
  for (int64_t i = 0; i < n; ++i) {
    int32_t c = static_cast<int32_t>(r.below(3));
    d.labels.push_back(c);
    for (int64_t y = 0; y < 12; ++y)
      for (int64_t x = 0; x < 12; ++x)
        d.images[i * 144 + y * 12 + x] =
            static_cast<float>(0.3 * r.uniform() + (y / 4 == c ? 0.6 : 0.0));
  }
  return d;
}

Model small_net(int classes = 3) {
  Model m({1, 12, 12});
  m.add("conv1", "conv", Attrs().set("out_channels", 4).set("kernel", 3).set("pad", 1));
  m.add("relu1", "relu", Attrs());
  m.add("pool1", "maxpool", Attrs().set("kernel", 2).set("stride", 2));
  m.add("fc1", "fc", Attrs().set("out_features", classes));
  return m;
}

}  // namespace

// Buffers of 2 MiB and more are 2 MiB aligned (huge-page advised), smaller ones 64-byte aligned;
// both hold what is written to their last element.
TEST(Tensor, LargeBuffersAreHugePageAligned) {
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 19) - 1}, int64_t{1} << 19,
                    (int64_t{5} << 19) + 3}) {
    float* p = aligned_alloc_floats(n);
    const auto addr = reinterpret_cast<uintptr_t>(p);
    EXPECT_EQ(addr % 64, 0u) << n;
    if (n * 4 >= (int64_t{2} << 20) && !std::getenv("DEFTNN_HUGEPAGES")) {
      EXPECT_EQ(addr % (uintptr_t{2} << 20), 0u) << n;
    }
    for (int64_t i = 0; i < n; i += 4096) p[i] = static_cast<float>(i);
    p[n - 1] = 7.0f;
    EXPECT_EQ(p[n - 1], 7.0f);
    if (n > 4096) {
      EXPECT_EQ(p[4096], 4096.0f);
    }
    aligned_free(p);
  }
}

TEST(Model, CaffeNetShapesMatchCaffe) {
  Model m = build_zoo("caffenet");
  auto s = m.value_shapes(1);
  auto at = [&](const char* name) { return s[m.find(name) + 1]; };
  EXPECT_EQ(at("conv1"), (Shape{1, 96, 55, 55}));
  EXPECT_EQ(at("pool1"), (Shape{1, 96, 27, 27}));
  EXPECT_EQ(at("conv2"), (Shape{1, 256, 27, 27}));
  EXPECT_EQ(at("pool2"), (Shape{1, 256, 13, 13}));
  EXPECT_EQ(at("conv5"), (Shape{1, 256, 13, 13}));
  EXPECT_EQ(at("pool5"), (Shape{1, 256, 6, 6}));
  EXPECT_EQ(at("fc6"), (Shape{1, 4096}));
  EXPECT_EQ(m.output_shape(32), (Shape{32, 1000}));
  // bvlc_reference_caffenet has 60,965,224 parameters (weights + biases).
  EXPECT_EQ(m.num_params(), 60965224);
  // Per-group GEMM K of conv2 is 48*5*5 = 1200: its weight is [256, 48, 5, 5].
  EXPECT_EQ(m.nodes()[m.find("conv2")].layer->param("weight")->value.shape(), (Shape{256, 48, 5, 5}));
}

TEST(Model, VariantsDifferOnlyInClasses) {
  EXPECT_EQ(build_zoo("flickr_style").output_shape(1), (Shape{1, 20}));
  EXPECT_EQ(build_zoo("flowers102").output_shape(1), (Shape{1, 102}));
  EXPECT_EQ(build_zoo("sos").output_shape(1), (Shape{1, 5}));
  EXPECT_THROW(build_zoo("vgg"), Error);
}

TEST(Model, LenetAndCifarnetShapes) {
  Model l = build_zoo("lenet");
  EXPECT_EQ(l.value_shapes(1)[l.find("pool2") + 1], (Shape{1, 50, 4, 4}));
  // Caffe LeNet: 20*25+20 + 50*500+50 + 800*500+500 + 500*10+10 = 431,080 parameters.
  EXPECT_EQ(l.num_params(), 431080);
  Model c = build_zoo("cifarnet", ZooOptions{{1, 32, 32}, 10});
  auto s = c.value_shapes(1);
  EXPECT_EQ(s[c.find("pool1") + 1], (Shape{1, 32, 16, 16}));
  EXPECT_EQ(s[c.find("pool3") + 1], (Shape{1, 64, 4, 4}));
  EXPECT_EQ(c.output_shape(1), (Shape{1, 10}));
}

TEST(Model, RejectsBadGraphs) {
  Model m({1, 8, 8});
  m.add("c", "conv", Attrs().set("out_channels", 2).set("kernel", 3));
  EXPECT_THROW(m.add("c", "relu", Attrs()), Error);                  // duplicate name
  EXPECT_THROW(m.add("r", "relu", Attrs(), {5}), Error);             // unknown input
  EXPECT_THROW(m.add("big", "conv", Attrs().set("out_channels", 2).set("kernel", 9)), Error);
  try {
    m.add("big", "conv", Attrs().set("out_channels", 2).set("kernel", 9));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("big"), std::string::npos) << e.what();
  }
  Tensor wrong({1, 2, 8, 8});
  EXPECT_THROW(m.forward(wrong), Error);
  // A forged size fails cleanly instead of allocating terabytes.
  EXPECT_THROW(m.add("huge", "fc", Attrs().set("out_features", int64_t{1} << 40)), Error);
}

// Whole-graph gradient (through a DAG with a shared value, concat and add) against finite
// differences of the loss with respect to one parameter tensor.
TEST(Model, GraphBackwardMatchesFiniteDifferences) {
  Model m({2, 6, 6});
  int c1 = m.add("c1", "conv", Attrs().set("out_channels", 3).set("kernel", 3).set("pad", 1));
  int r1 = m.add("r1", "relu", Attrs());
  int c2 = m.add("c2", "conv", Attrs().set("out_channels", 3).set("kernel", 1), {r1});
  int c3 = m.add("c3", "conv", Attrs().set("out_channels", 3).set("kernel", 3).set("pad", 1), {r1});
  int a = m.add("sum", "add", Attrs(), {c2, c3, c1});
  int cat = m.add("cat", "concat", Attrs(), {a, c2});
  m.add("fc", "fc", Attrs().set("out_features", 4), {cat});
  m.init_params(7);
  Tensor x = random_tensor({2, 2, 6, 6}, 3);
  std::vector<int32_t> labels{1, 3};
  auto loss = [&]() {
    return softmax_cross_entropy(m.forward(x, true), labels.data(), nullptr);
  };
  Tensor d;
  softmax_cross_entropy(m.forward(x, true), labels.data(), &d);
  m.zero_grad();
  m.backward(d);
  for (const char* name : {"c1", "c3", "fc"}) {
    Param* w = m.nodes()[m.find(name)].layer->param("weight");
    Tensor analytic = w->grad.clone();
    for (int64_t i = 0; i < w->value.numel(); i += 5) {
      float keep = w->value[i];
      const float h = 1e-2f;
      w->value[i] = keep + h;
      double lp = loss();
      w->value[i] = keep - h;
      double lm = loss();
      w->value[i] = keep;
      double numeric = (lp - lm) / (2 * h);
      EXPECT_NEAR(analytic[i], numeric, 2e-3 + 2e-2 * std::fabs(numeric)) << name << "[" << i << "]";
    }
  }
}

TEST(Model, FoldBatchnormKeepsOutputs) {
  Model m({3, 7, 7});
  m.add("conv", "conv", Attrs().set("out_channels", 4).set("kernel", 3));
  m.add("bn", "batchnorm", Attrs().set("eps", 1e-3));
  m.add("relu", "relu", Attrs());
  m.init_params(1);
  Layer* bn = m.nodes()[1].layer.get();
  Rng r(9);
  for (const char* p : {"mean", "shift", "scale"})
    for (int64_t i = 0; i < 4; ++i) bn->param(p)->value[i] = static_cast<float>(r.normal());
  for (int64_t i = 0; i < 4; ++i) bn->param("var")->value[i] = 0.5f + static_cast<float>(r.uniform());
  Tensor x = random_tensor({2, 3, 7, 7}, 5);
  Tensor before = m.forward(x).clone();
  EXPECT_EQ(m.fold_batchnorm(), 1);
  EXPECT_EQ(m.nodes().size(), 2u);
  const Tensor& after = m.forward(x);
  ASSERT_EQ(after.shape(), before.shape());
  for (int64_t i = 0; i < after.numel(); ++i) EXPECT_NEAR(after[i], before[i], 1e-4f);
}

TEST(Train, CrossEntropyMatchesHandComputed) {
  Tensor logits = Tensor::from({2, 3}, {1, 2, 3, 0, 0, 0});
  std::vector<int32_t> y{2, 0};
  Tensor d;
  double l = softmax_cross_entropy(logits, y.data(), &d);
  double l0 = -std::log(std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)));
  double l1 = std::log(3.0);
  EXPECT_NEAR(l, (l0 + l1) / 2, 1e-6);
  EXPECT_NEAR(d[2], (std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 1) / 2, 1e-6);
  EXPECT_NEAR(d[3], (1.0 / 3 - 1) / 2, 1e-6);
  std::vector<int32_t> bad{3, 0};
  EXPECT_THROW(softmax_cross_entropy(logits, bad.data(), nullptr), Error);
}

TEST(Train, LearnsSyntheticTaskAndIsDeterministic) {
  Dataset tr = stripes(600, 1), te = stripes(300, 2);
  TrainConfig cfg;
  cfg.epochs = 3;
  cfg.batch = 32;
  cfg.lr = 0.05;
  cfg.progress = false;
  Model a = small_net();
  a.init_params(11);
  auto ha = train(a, tr, &te, cfg);
  EXPECT_GT(ha.back().test_top1, 0.9);   // chance is 1/3
  Model b = small_net();
  b.init_params(11);
  auto hb = train(b, tr, &te, cfg);
  EXPECT_EQ(ha.back().train_loss, hb.back().train_loss);   // same seed, same result, bit for bit
  EXPECT_EQ(ha.back().test_top1, hb.back().test_top1);
}

TEST(Train, TrainedAtChanceIsLossLnClassesAtChanceAccuracy) {
  EpochStats dead;
  dead.train_loss = 2.3031;   // ln 10 = 2.302585: a cifarnet whose units died (lr 0.01)
  dead.train_top1 = 0.1038;
  EXPECT_TRUE(trained_at_chance(dead, 10));
  EpochStats slow = dead;     // at chance loss but above chance accuracy: learning
  slow.train_top1 = 0.2;
  EXPECT_FALSE(trained_at_chance(slow, 10));
  EpochStats learning = dead;
  learning.train_loss = 2.1278;
  EXPECT_FALSE(trained_at_chance(learning, 10));
  dead.train_loss = std::log(3.0) + 0.005;
  dead.train_top1 = 0.34;
  EXPECT_TRUE(trained_at_chance(dead, 3));
  EXPECT_FALSE(trained_at_chance(dead, 1));
}

// A short run on the real Fashion-MNIST data (when the Debian package is installed) must
// clearly beat chance (10%).
TEST(Train, LenetOnFashionMnistSubsetBeatsChance) {
  Dataset tr, te;
  try {
    tr = load_fashion_mnist("", true, 6000);
    te = load_fashion_mnist("", false, 2000);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  Model m = build_zoo("lenet");
  m.init_params(1);
  TrainConfig cfg;
  cfg.epochs = 1;
  cfg.progress = false;
  auto h = train(m, tr, &te, cfg);
  EXPECT_GT(h.back().test_top1, 0.6);
}

using test::run_cli;

// `--device cuda` where there is no GPU (or no CUDA backend in this build): a clear error, exit 1.
// (tests/test_cuda.cpp runs it where there is one.)
TEST(Cli, BenchOnCudaWithoutAGpuSaysWhy) {
  std::string out;
  const int rc = run_cli("bench lenet --device cuda --iters 1", &out);
  if (rc == 0) GTEST_SKIP() << "this machine runs CUDA";
  EXPECT_EQ(rc, 1) << out;
  EXPECT_TRUE(out.find("built without the CUDA backend") != std::string::npos ||
              out.find("no usable CUDA device") != std::string::npos) << out;
}

TEST(Cli, HelpAndErrors) {
  std::string out;
  EXPECT_EQ(run_cli("--help", &out), 0);
  EXPECT_NE(out.find("train"), std::string::npos);
  EXPECT_EQ(run_cli("train --help", &out), 0);
  EXPECT_NE(out.find("--epochs"), std::string::npos);
  EXPECT_NE(run_cli("train --no-such-flag", &out), 0);
  EXPECT_NE(run_cli("train --epochs banana", &out), 0);
  EXPECT_NE(run_cli("eval /nonexistent/model.deft", &out), 0);
  EXPECT_NE(out.find("/nonexistent/model.deft"), std::string::npos) << out;
  EXPECT_NE(run_cli("train --data /nonexistent/fmnist --epochs 1", &out), 0);
  EXPECT_NE(out.find("/nonexistent/fmnist"), std::string::npos) << out;
  EXPECT_NE(out.find("dataset-fashion-mnist"), std::string::npos) << out;
  EXPECT_NE(run_cli("info nosuchnet", &out), 0);
  EXPECT_NE(out.find("nosuchnet"), std::string::npos) << out;
}

TEST(Cli, InfoAndBenchOnZooNetwork) {
  std::string out;
  ASSERT_EQ(run_cli("info lenet", &out), 0) << out;
  EXPECT_NE(out.find("431080"), std::string::npos) << out;
  std::string json = testing::TempDir() + "/bench.json";
  ASSERT_EQ(run_cli("bench lenet --batch 1 4 --iters 3 --json " + json, &out), 0) << out;
  EXPECT_NE(out.find("conv1"), std::string::npos) << out;
  FILE* f = fopen(json.c_str(), "r");
  ASSERT_NE(f, nullptr);
  fclose(f);
}

// DEFTNN_VERBOSE=1: each conv / fc layer says which implementation it ran, once per shape.
TEST(Cli, VerboseNamesEachLayersKernel) {
  std::string out;
  ASSERT_EQ(run_cli("--threads 1 bench lenet --batch 1 4 --iters 2 --warmup 0", &out), 0) << out;
  EXPECT_EQ(out.find("deftnn: conv1 (conv)"), std::string::npos) << "reported without DEFTNN_VERBOSE";
  ASSERT_EQ(run_cli("--threads 1 bench lenet --batch 1 4 --iters 2 --warmup 0", &out, "DEFTNN_VERBOSE=1 "), 0)
      << out;
  EXPECT_NE(out.find("deftnn: conv1 (conv) -> [1, 20, 24, 24]: fission_conv, no im2col"), std::string::npos) << out;
  EXPECT_NE(out.find("deftnn: conv1 (conv) -> [4, 20, 24, 24]: fission_conv, no im2col"), std::string::npos) << out;
  EXPECT_NE(out.find("deftnn: ip1 (fc) -> [1, 500]: gemv"), std::string::npos) << out;
  EXPECT_NE(out.find("deftnn: ip1 (fc) -> [4, 500]: sgemm Y^T = W X^T, weights as A packed once"),
            std::string::npos) << out;
  // Once per node and shape, not once per forward (3 forwards per batch size here).
  size_t n = 0;
  for (size_t p = out.find("deftnn: conv2 (conv)"); p != std::string::npos;
       p = out.find("deftnn: conv2 (conv)", p + 1))
    ++n;
  EXPECT_EQ(n, 2u) << out;
}

namespace {
std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
}  // namespace

// train --val-from-train holds images out of training and records the split in the model file;
// optimize validates on that split by default and refuses images the model was trained on.
TEST(Cli, ValidationHeldOutOfTraining) {
  const std::string dir = testing::TempDir() + "/valsplit_" + std::to_string(::getpid());
  const std::string model = dir + "_lenet.deft";
  std::string out;
  int rc = run_cli("--threads 1 train --net lenet --epochs 1 --limit 600 --val-from-train 100 -o " + model, &out);
  if (rc != 0 && out.find("dataset-fashion-mnist") != std::string::npos)
    GTEST_SKIP() << "no Fashion-MNIST here: " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("training on 500 images"), std::string::npos) << out;
  EXPECT_NE(out.find("100 held-out training images"), std::string::npos) << out;
  const HeldOut h = read_held_out(load_model_metadata(model));
  EXPECT_EQ(h.held_out, 100);
  EXPECT_EQ(h.total, 600);
  EXPECT_EQ(h.seed, kValidationSplitSeed);

  // No --lr: the network's own (cifarnet's 0.005); given, it wins.
  EXPECT_EQ(zoo_learning_rate("lenet"), 0.01);
  EXPECT_EQ(zoo_learning_rate("cifarnet"), 0.005);
  EXPECT_NE(out.find("lr 0.01 "), std::string::npos) << out;
  ASSERT_EQ(run_cli("--threads 1 train --net cifarnet --epochs 1 --limit 64 -o " + model + ".c", &out), 0) << out;
  EXPECT_NE(out.find("lr 0.005 "), std::string::npos) << out;
  ASSERT_EQ(run_cli("--threads 1 train --net cifarnet --epochs 1 --limit 64 --lr 0.002 -o " + model + ".c", &out), 0) << out;
  EXPECT_NE(out.find("lr 0.002 "), std::string::npos) << out;
  std::filesystem::remove(model + ".c");

  // Absurd counts: a clear error naming the count and the limit.
  EXPECT_NE(run_cli("train --net lenet --epochs 1 --limit 600 --val-from-train 400 -o " + model + ".x", &out), 0);
  EXPECT_NE(out.find("cannot hold out 400 of 600"), std::string::npos) << out;
  EXPECT_NE(run_cli("train --net lenet --epochs 1 --val-from-train 0 -o " + model + ".x", &out), 0);
  EXPECT_NE(out.find("--val-from-train"), std::string::npos) << out;

  const std::string opt = dir + "_opt";
  const std::string common = "--layers conv2 --thresholds 0.3 --finetune-epochs 0 --iters 1 --max-evaluated 2 --batch 2";
  ASSERT_EQ(run_cli("--threads 1 optimize " + model + " --out " + opt + " " + common, &out), 0) << out;
  EXPECT_NE(out.find("validate on 100"), std::string::npos) << out;
  EXPECT_NE(out.find("held out 100 (seed"), std::string::npos) << out;
  const std::string fj = read_text(opt + "/frontier.json");
  EXPECT_NE(fj.find("\"validation_split\""), std::string::npos) << fj.substr(0, 600);
  const Optimization o = load_optimization(opt);
  EXPECT_EQ(o.validation_split.held_out, 100);
  EXPECT_EQ(o.validation_split.total, 600);
  // More held-out images than the model was trained without, or another seed: refused.
  EXPECT_NE(run_cli("optimize " + model + " --out " + opt + "2 --val-from-train 200 " + common, &out), 0);
  EXPECT_NE(out.find("trained on"), std::string::npos) << out;
  EXPECT_NE(run_cli("optimize " + model + " --out " + opt + "2 --split-seed 5 " + common, &out), 0);
  EXPECT_NE(out.find("--split-seed 5"), std::string::npos) << out;
  EXPECT_NE(run_cli("optimize " + model + " --out " + opt + "2 --val-from-train 50 --val-from-test 50 " + common, &out), 0);
  // The old way stays reachable.
  ASSERT_EQ(run_cli("--threads 1 optimize " + model + " --out " + opt + "3 --val-from-test 64 " + common, &out), 0) << out;
  EXPECT_NE(out.find("validate on 64"), std::string::npos) << out;
  EXPECT_TRUE(load_optimization(opt + "3").validation_split.empty());
  // refine takes the optimisation's split.
  ASSERT_EQ(run_cli("--threads 1 refine " + opt + " --finetune-epochs 0 --limit 50 --iters 1 --rounds 1 --losses 100", &out), 0) << out;
  EXPECT_NE(out.find("never used for selection"), std::string::npos) << out;
  EXPECT_NE(out.find("validate on 100"), std::string::npos) << out;
  std::filesystem::remove_all(opt);
  std::filesystem::remove_all(opt + "3");
  std::remove(model.c_str());
}
