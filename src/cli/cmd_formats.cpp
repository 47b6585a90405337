// deftnn subcommand registered from this file (see cli/common.h): formats, the optimiser's format
// stage (issue 4): per conv / fc layer, the smallest weight format within an accuracy budget,
// chosen on calibration images from the training set and reported on the test set.
//
//   deftnn formats MODEL [--formats deft8_e4,deft8_e5,bf16] [--max-accuracy-loss 0.2]
//                  [--val 5000] [-o out.deft] [--json out.json]
#include "cli/common.h"
#include "deftnn/format_stage.h"
#include "deftnn/io.h"
#include "deftnn/onnx.h"

namespace deftnn::cli {

namespace {

struct FormatsArgs {
  std::string model, out, json, formats = "deft8_e4,deft8_e5,bf16", mode = "fission";
  double max_loss = 0.2;   // points
  int64_t val = 5000;
  DataOptions data;
};

// The last n images of a data set (calibration images; the test set only reports).
Dataset tail(const Dataset& d, int64_t n) {
  n = std::min(n, d.size());
  Dataset t;
  t.num_classes = d.num_classes;
  t.name = d.name + " (last " + std::to_string(n) + ")";
  gather_batch(d, {}, d.size() - n, d.size(), t.images, t.labels);
  return t;
}

void do_formats(const FormatsArgs& a) {
  Model m = load_any_model(a.model);
  const Dataset train = data_for(m, a.data, true, a.data.limit);
  const Dataset val = tail(train, a.val);
  const Dataset test = data_for(m, a.data, false, a.data.limit);
  FormatStageOptions o;
  o.formats = parse_format_list(a.formats);
  o.formats.erase(std::remove(o.formats.begin(), o.formats.end(), Format::f32), o.formats.end());
  o.max_accuracy_loss = a.max_loss / 100.0;
  o.mode = fission_mode_from_name(a.mode);
  o.progress = [](const std::string& s) {
    std::printf("  %s\n", s.c_str());
    std::fflush(stdout);
  };
  std::printf("format stage on %s: candidates %s, budget %.2f points of top-1 on %s\n",
              a.model.c_str(), a.formats.c_str(), a.max_loss, val.name.c_str());
  const FormatStageResult r = choose_formats(m, val, o);
  std::printf("chosen: %s (validation top-1 %.2f%% -> %.2f%%, %d evaluations)\n",
              r.spec.name.c_str(), 100 * r.base_accuracy, 100 * r.accuracy, r.evaluations);
  const EvalResult te = evaluate(m, test, 256, false);
  Model base = load_any_model(a.model);
  const EvalResult tb = evaluate(base, test, 256, false);
  std::printf("test set (%lld images): fp32 top-1 %.2f%%, chosen formats %.2f%% (%+.2f points)\n",
              static_cast<long long>(test.size()), 100 * tb.top1, 100 * te.top1,
              100 * (te.top1 - tb.top1));
  json layers = json::array();
  for (const auto& [name, f] : r.layers) layers.push_back({{"layer", name}, {"format", format_name(f)}});
  write_json(a.json, {{"model", a.model}, {"spec", r.spec.name}, {"layers", layers},
                      {"budget_points", a.max_loss}, {"validation", val.name},
                      {"validation_top1_f32", r.base_accuracy}, {"validation_top1", r.accuracy},
                      {"test_top1_f32", tb.top1}, {"test_top1", te.top1}});
  if (!a.out.empty()) {
    save_any_model(m, a.out);
    std::printf("wrote %s (formats are layer attributes: `deftnn eval/bench` run them)\n", a.out.c_str());
  }
}

}  // namespace

void register_format_commands(CLI::App& app, Registry& registry) {
  static FormatsArgs fa;
  auto* c = app.add_subcommand(
      "formats", "the optimiser's format stage: per conv/fc layer, the smallest weight format "
                 "(data fission) that keeps top-1 within a budget");
  c->add_option("model", fa.model, "model file (.deft or .onnx)")->required();
  c->add_option("--formats", fa.formats, "candidates, tried per layer in this order (fewest bits first)")
      ->capture_default_str();
  c->add_option("--max-accuracy-loss", fa.max_loss, "budget in points of top-1 for the whole model")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--val", fa.val, "calibration images that choose: the last N of the training set")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--fission-mode", fa.mode, "fission (widen next to the FMA), offchip, or bf16_dot (Deft-8 on the bf16 unit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fission", "offchip", "bf16_dot"}));
  c->add_option("-o,--out", fa.out, "write the model with the chosen formats");
  c->add_option("--json", fa.json, "write the choice and accuracies as JSON");
  add_data_options(c, fa.data);
  registry.add(c, [] { do_formats(fa); });
}

}  // namespace deftnn::cli
