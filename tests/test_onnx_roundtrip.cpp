// The deftnn side of the ONNX -> deftnn -> optimise -> ONNX round trip (issue 5) without ONNX
// Runtime: a LeNet imported from ONNX, optimised by synapse vector elimination (the optimiser's
// own candidates composed into one model, conv and fc eliminated), exported to ONNX again, checked
// by onnx.checker when python3-onnx is there, and re-imported: the outputs must be the same.
// bench/peers/roundtrip_fmnist.py does the whole thing on Fashion-MNIST with ONNX Runtime.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "deftnn/io.h"
#include "deftnn/onnx.h"
#include "deftnn/optimize.h"
#include "deftnn/rng.h"
#include "deftnn/zoo.h"

using namespace deftnn;

namespace {

// Images of three classes a LeNet can tell apart after a few steps: a bright square top-left,
// a bright square bottom-right, or a bright bar in the middle, plus noise.
Dataset blobs(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Dataset d;
  d.images = Tensor({n, 1, 28, 28});
  d.num_classes = 10;
  d.name = "blobs";
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % 3);
    d.labels.push_back(c);
    float* p = d.images.data() + i * 28 * 28;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const bool on = c == 0 ? (y < 12 && x < 12) : c == 1 ? (y >= 16 && x >= 16) : (y >= 11 && y < 17);
        p[y * 28 + x] = (on ? 0.8f : 0.1f) + rng.uniform(-0.1f, 0.1f);
      }
  }
  return d;
}

float max_abs(const Tensor& t) {
  float m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t[i]));
  return m;
}

}  // namespace

TEST(OnnxRoundTrip, OptimisedLeNetExportsAndReimportsWithSameOutputs) {
  // 1. ONNX in: a LeNet exported to ONNX and imported again, as a user's model would be.
  // Node names as torch.onnx writes them ("/net/net.0/Conv"): paths, not file names.
  Model lenet = build_zoo("lenet");
  lenet.init_params(7);
  for (auto& n : lenet.nodes()) n.name = "/net/" + n.name + "/Op";
  Model base = import_onnx_bytes(export_onnx_bytes(lenet), ".", "lenet", {});
  const std::string dir = (std::filesystem::temp_directory_path() / ("deftnn_onnx_rt_" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);

  // 2. Optimise it: one low threshold so every candidate eliminates, tiny data and timings.
  Dataset tr = blobs(96, 1), val = blobs(48, 2);
  OptimizeOptions o;
  o.thresholds = {0.1};
  o.align = 1;
  o.finetune.epochs = 1;
  o.finetune.batch = 32;
  o.time_batch = 2;
  o.time_iterations = 1;
  o.max_evaluated = 2;
  // Saved and loaded as `deftnn optimize` / `deftnn frontier` do (candidate files are named
  // after the layers, whose names here hold '/').
  save_optimization(optimize(base, tr, val, o), dir + "/opt");
  Optimization opt = load_optimization(dir + "/opt");
  ASSERT_FALSE(opt.candidates.empty());
  std::map<std::string, int> all;
  for (size_t i = 0; i < opt.candidates.size(); ++i) all[opt.candidates[i].elimination.layer] = static_cast<int>(i);
  Model m = compose(opt, all);
  int conv_elim = 0, fc_elim = 0;
  for (const auto& c : opt.candidates) {
    const auto& e = c.elimination;
    if (e.kept < e.K) {
      const std::string t = m.nodes()[m.find(e.layer)].layer->type();
      conv_elim += t == "conv";
      fc_elim += t == "fc";
    }
  }
  EXPECT_GT(conv_elim, 0) << "no conv layer eliminated (retained < K)";
  EXPECT_GT(fc_elim, 0) << "no fc layer eliminated (retained < K)";

  // 3. ONNX out, through a file as `deftnn convert chosen.deft -o opt.onnx` does.
  save_model(m, dir + "/chosen.deft");
  export_onnx(load_model(dir + "/chosen.deft"), dir + "/opt.onnx");
  Model back = import_onnx(dir + "/opt.onnx");
  for (const auto& n : back.nodes()) EXPECT_FALSE(n.layer->attrs().has("retained")) << n.name;

  // 4. Same outputs: the exported dense weights hold zeros where synapses were eliminated and the
  // K/K' scale, so only the summation order differs from the eliminated kernels.
  Dataset te = blobs(64, 3);
  Tensor want = m.forward(te.images).clone();
  Tensor got = back.forward(te.images).clone();
  ASSERT_EQ(got.shape(), want.shape());
  float d = 0;
  for (int64_t i = 0; i < want.numel(); ++i) d = std::max(d, std::fabs(got[i] - want[i]));
  EXPECT_LE(d, 1e-5f * std::max(1.0f, max_abs(want)));
  const int64_t C = want.dim(1);
  for (int64_t n = 0; n < want.dim(0); ++n) {
    const float* a = want.data() + n * C;
    const float* b = got.data() + n * C;
    EXPECT_EQ(std::max_element(a, a + C) - a, std::max_element(b, b + C) - b) << "sample " << n;
  }

  // 5. onnx.checker on the exported optimised model.
  if (std::system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") != 0) {
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << "python3-onnx is not installed: onnx.checker not run (outputs were compared)";
  }
  const std::string cmd = "/usr/bin/python3 -c \"import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                          "full_check=True)\" " + dir + "/opt.onnx";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::filesystem::remove_all(dir);
}
