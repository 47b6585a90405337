// The optimiser's format stage: see deftnn/format_stage.h.
#include "deftnn/format_stage.h"

#include <algorithm>
#include <cstdio>

#include "deftnn/error.h"
#include "deftnn/train.h"

namespace deftnn {

FormatStageResult choose_formats(Model& model, const Dataset& data, const FormatStageOptions& o) {
  check(data.size() > 0, "format stage: the validation data set '" + data.name + "' is empty");
  check(o.max_accuracy_loss >= 0, "format stage: the accuracy budget must not be negative");
  check(!o.formats.empty(), "format stage: no candidate format");
  for (const Format f : o.formats)
    check(fission_supports(f), std::string("format stage: format '") + format_name(f) +
                                   "' is not supported by the fission GEMM");
  FormatStageResult r;
  auto accuracy = [&] {
    ++r.evaluations;
    return evaluate(model, data, o.eval_batch, false).top1;
  };
  set_model_format(model, Format::f32);
  r.base_accuracy = accuracy();
  r.accuracy = r.base_accuracy;
  const double floor = r.base_accuracy - o.max_accuracy_loss;

  // conv / fc nodes, largest weight first (ties: graph order).
  struct Item {
    std::string name;
    int64_t weights;
  };
  std::vector<Item> items;
  for (Node& n : model.nodes()) {
    const std::string t = n.layer->type();
    if (t != "conv" && t != "fc") continue;
    const Param* w = n.layer->param("weight");
    items.push_back({n.name, w ? w->value.numel() : 0});
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.weights > b.weights; });

  std::vector<std::pair<std::string, Format>> chosen;
  for (const Item& it : items) {
    Format keep = Format::f32;
    for (const Format f : o.formats) {
      if (f == Format::f32) break;
      set_model_format(model, f, o.mode, {it.name}, o.rounding);
      const double acc = accuracy();
      if (o.progress) {
        char line[200];
        std::snprintf(line, sizeof line, "%s in %s: top-1 %.2f%% (floor %.2f%%) %s",
                      it.name.c_str(), format_name(f), 100 * acc, 100 * floor,
                      acc >= floor ? "kept" : "rejected");
        o.progress(line);
      }
      if (acc >= floor) {
        keep = f;
        r.accuracy = acc;
        break;
      }
    }
    if (keep == Format::f32) set_model_format(model, Format::f32, o.mode, {it.name});
    chosen.emplace_back(it.name, keep);
  }
  // The spec and the per-layer list in graph order.
  std::sort(chosen.begin(), chosen.end(), [&](const auto& a, const auto& b) {
    return model.find(a.first) < model.find(b.first);
  });
  r.layers = chosen;
  // Built directly (a node name may hold characters the spec syntax uses).
  r.spec.parts.clear();
  for (const auto& [layer, f] : chosen) {
    if (f == Format::f32) continue;
    if (!r.spec.name.empty()) r.spec.name += "+";
    r.spec.name += layer + ":" + format_name(f);
    r.spec.parts.emplace_back(layer, f);
  }
  if (r.spec.parts.empty()) r.spec = parse_format_spec("f32");
  return r;
}

}  // namespace deftnn
