// deftnn subcommands registered from this file (see cli/common.h): run (a model on a .npy input)
// and convert (ONNX <-> native model files).
#include <algorithm>
#include <chrono>

#include "cli/common.h"
#include "deftnn/onnx.h"

namespace deftnn::cli {

namespace {

struct RunArgs {
  std::string model, input, output, json;
};

struct ConvertArgs {
  std::string in, out;
};

void do_run(const RunArgs& a) {
  Model m = load_any_model(a.model);
  Tensor x = read_npy(a.input);
  const Shape& want = m.input_shape();
  // A single sample without the batch dimension gets one.
  if (x.shape() == want) {
    Shape s{1};
    s.insert(s.end(), want.begin(), want.end());
    x = x.reshaped(s);
  }
  if (Shape(x.shape().begin() + 1, x.shape().end()) != want)
    throw Error("--input '" + a.input + "' is " + shape_str(x.shape()) + " but the model takes [N] + " +
                shape_str(want));
  // An inference session (Model::freeze): the kernels bench times - Winograd, fused output
  // passes, the sparse kernels of pruned layers - not the training path's.
  m.freeze(true);
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor& y = m.forward(x);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: input %s -> output %s in %.2f ms\n", a.model.c_str(), shape_str(x.shape()).c_str(),
              shape_str(y.shape()).c_str(), ms);
  if (!a.output.empty()) {
    write_npy(y, a.output);
    std::printf("wrote %s\n", a.output.c_str());
  } else if (y.ndim() == 2) {
    for (int64_t n = 0; n < std::min<int64_t>(y.dim(0), 8); ++n) {
      const float* r = y.data() + n * y.dim(1);
      const int64_t best = std::max_element(r, r + y.dim(1)) - r;
      std::printf("  sample %lld: argmax %lld (%.6g)\n", static_cast<long long>(n),
                  static_cast<long long>(best), r[best]);
    }
  }
  write_json(a.json, {{"model", a.model}, {"input", x.shape()}, {"output", y.shape()}, {"ms", ms}});
}

void do_convert(const ConvertArgs& a) {
  Model m = load_any_model(a.in);
  save_any_model(m, a.out);
  std::printf("converted %s (%zu nodes, %lld parameters) -> %s\n", a.in.c_str(), m.nodes().size(),
              static_cast<long long>(m.num_params()), a.out.c_str());
}

}  // namespace

void register_onnx_commands(CLI::App& app, Registry& registry) {
  static RunArgs run;
  auto* c_run = app.add_subcommand("run", "run a model (.onnx or .deft) on a NumPy .npy float32 input");
  c_run->add_option("model", run.model, "model file (.onnx or native)")->required();
  c_run->add_option("--input", run.input, "input .npy, [N, ...] or one sample without N")->required();
  c_run->add_option("-o,--out", run.output, "write the output as .npy (float32)");
  c_run->add_option("--json", run.json, "write shapes and time as JSON");
  registry.add(c_run, [] { do_run(run); });

  static ConvertArgs conv;
  auto* c_conv = app.add_subcommand("convert", "convert between ONNX (.onnx) and native model files");
  c_conv->add_option("model", conv.in, "input model (.onnx or native)")->required();
  c_conv->add_option("-o,--out", conv.out, "output model (.onnx: ONNX opset 13; else native)")->required();
  registry.add(c_conv, [] { do_convert(conv); });
}

}  // namespace deftnn::cli
