// Real architectures: torchvision's AlexNet, SqueezeNet 1.1, VGG-11 and ResNet-18 (random weights,
// random BatchNorm statistics) exported by scripts/export_torchvision.py at 112x112, batch 2;
// deftnn's outputs must match PyTorch's within 1e-4 relative (max |diff| / max |reference|).
// The files are generated once into <build>/tests/torchvision_onnx (about a minute); without
// /usr/bin/python3 with torch and torchvision the test is skipped, saying so.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "deftnn/onnx.h"

using namespace deftnn;
namespace fs = std::filesystem;

namespace {

const char* kModels[] = {"alexnet", "squeezenet1_1", "vgg11", "resnet18"};

// Returns "" when the files exist (generating them if needed), else why they cannot.
std::string ensure_files(const fs::path& dir) {
  bool all = true;
  for (const char* m : kModels) all = all && fs::exists(dir / (std::string(m) + ".output.npy"));
  if (all) return "";
  if (std::system("/usr/bin/python3 -c 'import torch, torchvision, numpy' >/dev/null 2>&1") != 0)
    return "/usr/bin/python3 lacks torch/torchvision (Debian python3-torch, python3-torchvision)";
  const std::string cmd = "/usr/bin/python3 " DEFTNN_SOURCE_DIR "/scripts/export_torchvision.py " +
                          dir.string() + " --size 112 --batch 2 > " + (dir.string() + ".log") + " 2>&1";
  if (std::system(cmd.c_str()) != 0) return "export failed: see " + dir.string() + ".log";
  return "";
}

}  // namespace

TEST(OnnxTorchvision, FourModelsMatchPyTorch) {
  const fs::path dir = fs::current_path() / "torchvision_onnx";
  const std::string why = ensure_files(dir);
  if (!why.empty()) GTEST_SKIP() << why;
  for (const char* name : kModels) {
    const std::string base = (dir / name).string();
    Model m = import_onnx(base + ".onnx");
    const Tensor x = read_npy(base + ".input.npy");
    const Tensor want = read_npy(base + ".output.npy");
    const Tensor& got = m.forward(x);
    ASSERT_EQ(got.shape(), want.shape()) << name;
    float diff = 0, scale = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      diff = std::max(diff, std::fabs(got[i] - want[i]));
      scale = std::max(scale, std::fabs(want[i]));
    }
    std::printf("%-14s %zu nodes, max |diff| %.3g, relative %.3g\n", name, m.nodes().size(), diff, diff / scale);
    EXPECT_LE(diff, 1e-4f * scale) << name;
  }
}
