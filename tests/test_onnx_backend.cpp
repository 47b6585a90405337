// The ONNX backend test suite shipped by Debian's libonnx-testdata (node tests and the
// PyTorch-converted/operator/simple models): every test whose operators are all ones deftnn
// claims is imported and run; its outputs must match the reference within
// |got - want| <= 1e-5 + 1e-3 * |want| (the ONNX backend's rtol of 1e-3, with a small atol).
// The first graph input is the runtime input; further graph inputs are bound as constants
// (deftnn models have one runtime input). A test the importer rejects with an Error (an
// attribute combination, a rank or a runtime operand deftnn does not support) is counted as
// "unsupported" with its reason; a test that imports but gives wrong numbers, or crashes at run
// time, is a failure.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/onnx.h"

using namespace deftnn;
namespace fs = std::filesystem;

namespace {

const char* kRoot = "/usr/share/libonnx-testdata/data";

const std::set<std::string> kClaimed = {
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "LeakyRelu", "Sigmoid", "MaxPool", "AveragePool",
    "GlobalAveragePool", "LRN", "BatchNormalization", "Concat", "Add", "Mul", "Flatten", "Reshape",
    "Shape", "Gather", "Unsqueeze", "Softmax", "Dropout", "Identity", "Pad", "Constant"};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Counts {
  int pass = 0, unsupported = 0, fail = 0;
};

}  // namespace

TEST(OnnxBackend, ClaimedOperatorsPassTheReferenceTests) {
  if (!fs::exists(kRoot)) GTEST_SKIP() << "libonnx-testdata is not installed (" << kRoot << ")";
  std::map<std::string, Counts> per_op;
  std::vector<std::string> failures, unsupported;
  std::vector<fs::path> dirs;
  for (const char* sub : {"node", "pytorch-converted", "pytorch-operator", "simple"})
    if (fs::exists(fs::path(kRoot) / sub))
      for (const auto& e : fs::directory_iterator(fs::path(kRoot) / sub))
        if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());

  for (const auto& dir : dirs) {
    onnx::ModelProto mp;
    const std::string bytes = slurp(dir / "model.onnx");
    if (!mp.ParseFromString(bytes)) continue;
    std::string op;
    bool claimed = mp.graph().node_size() > 0;
    for (const auto& n : mp.graph().node()) {
      claimed = claimed && kClaimed.count(n.op_type()) && (n.domain().empty() || n.domain() == "ai.onnx");
      if (op.empty() && n.op_type() != "Constant") op = n.op_type();
    }
    if (!claimed) continue;
    if (op.empty()) op = "Constant";
    const std::string kind = dir.parent_path().filename().string();
    const std::string key = kind == "node" ? op : kind + ":" + op;
    const std::string name = kind + "/" + dir.filename().string();
    Counts& c = per_op[key];

    std::set<std::string> inits;
    for (const auto& t : mp.graph().initializer()) inits.insert(t.name());
    std::vector<std::string> inputs;
    for (const auto& vi : mp.graph().input())
      if (!inits.count(vi.name())) inputs.push_back(vi.name());

    for (const auto& ds : fs::directory_iterator(dir)) {
      if (ds.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
      std::vector<Tensor> in;
      std::string why;
      Tensor want;
      const fs::path outp = ds.path() / "output_0.pb";
      try {  // sequence/optional test data are not tensors
        for (size_t k = 0;; ++k) {
          const fs::path p = ds.path() / ("input_" + std::to_string(k) + ".pb");
          if (!fs::exists(p)) break;
          in.push_back(read_onnx_tensor(p.string()));
        }
        if (fs::exists(outp)) want = read_onnx_tensor(outp.string());
      } catch (const Error& e) {
        why = std::string("test data: ") + e.what();
      }
      if (why.empty() && (in.size() != inputs.size() || !fs::exists(outp))) continue;
      Model m;
      OnnxImportOptions opt;
      for (size_t k = 1; k < inputs.size(); ++k) opt.constant_inputs[inputs[k]] = in[k];
      if (why.empty()) try {
        m = import_onnx_bytes(bytes, dir.string(), name, opt);
      } catch (const Error& e) {
        why = e.what();
      }
      if (!why.empty()) {
        ++c.unsupported;
        unsupported.push_back(name + ": " + why);
        continue;
      }
      try {
        Tensor x = in.empty() ? Tensor({1}) : in[0];
        const Tensor& got = m.forward(x);
        bool ok = got.numel() == want.numel();
        std::string detail = ok ? "" : "output has " + std::to_string(got.numel()) + " values, expected " +
                                           std::to_string(want.numel());
        for (int64_t i = 0; ok && i < want.numel(); ++i) {
          const float g = got[i], w = want[i];
          if (!(std::fabs(g - w) <= 1e-5f + 1e-3f * std::fabs(w)) && !(std::isinf(w) && g == w)) {
            ok = false;
            detail = "element " + std::to_string(i) + ": " + std::to_string(g) + " vs " + std::to_string(w);
          }
        }
        if (ok) ++c.pass;
        else {
          ++c.fail;
          failures.push_back(name + ": " + detail);
        }
      } catch (const std::exception& e) {
        ++c.fail;
        failures.push_back(name + ": run failed: " + e.what());
      }
    }
  }

  int pass = 0, uns = 0, fail = 0;
  std::printf("ONNX backend tests (libonnx-testdata) for the claimed operators:\n");
  std::printf("  %-36s %5s %12s %5s\n", "operator", "pass", "unsupported", "fail");
  for (const auto& [op, c] : per_op) {
    std::printf("  %-36s %5d %12d %5d\n", op.c_str(), c.pass, c.unsupported, c.fail);
    pass += c.pass;
    uns += c.unsupported;
    fail += c.fail;
  }
  std::printf("  %-36s %5d %12d %5d\n", "total", pass, uns, fail);
  std::printf("unsupported (reasons):\n");
  for (const auto& u : unsupported) std::printf("  %s\n", u.c_str());
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_GT(pass, 50);
}
