// set_model_format: the per-layer inference format of conv and fc (see deftnn/precision.h).
#include "deftnn/precision.h"

#include "deftnn/error.h"

namespace deftnn {
namespace {

bool gemm_layer(const Layer& l) { return l.type() == "conv" || l.type() == "fc"; }

}  // namespace

FissionMode fission_mode_from_name(const std::string& name) {
  if (name == "fission") return FissionMode::fission;
  if (name == "offchip") return FissionMode::offchip;
  throw Error("unknown fission mode '" + name + "' (expected fission or offchip)");
}

const char* fission_mode_name(FissionMode m) {
  return m == FissionMode::offchip ? "offchip" : "fission";
}

std::vector<Format> parse_format_list(const std::string& list) {
  std::vector<Format> out;
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    const std::string name = list.substr(at, comma - at);
    at = comma + 1;
    if (name.empty()) continue;
    if (name == "all") {
      for (const Format f : {Format::f32, Format::half, Format::deft16, Format::deft16q,
                             Format::bf16})
        out.push_back(f);
      for (int e = 1; e <= 7; ++e) out.push_back(deft8_format(e));
      continue;
    }
    const Format f = format_from_name(name);
    if (!fission_supports(f))
      throw Error("format '" + name + "' is not supported by the fission GEMM");
    out.push_back(f);
  }
  if (out.empty()) throw Error("empty format list '" + list + "'");
  return out;
}

FormatSpec parse_format_spec(const std::string& spec) {
  FormatSpec out;
  out.name = spec;
  size_t at = 0;
  while (at <= spec.size()) {
    size_t plus = spec.find('+', at);
    if (plus == std::string::npos) plus = spec.size();
    const std::string part = spec.substr(at, plus - at);
    at = plus + 1;
    if (part.empty()) throw Error("format spec '" + spec + "' has an empty part");
    const size_t colon = part.find(':');
    const std::string sel = colon == std::string::npos ? "" : part.substr(0, colon);
    const std::string fname = colon == std::string::npos ? part : part.substr(colon + 1);
    if (colon != std::string::npos && sel.empty())
      throw Error("format spec '" + spec + "': empty selector before ':'");
    const Format f = format_from_name(fname);
    if (!fission_supports(f))
      throw Error("format '" + fname + "' is not supported by the fission GEMM");
    out.parts.emplace_back(sel, f);
  }
  return out;
}

std::vector<FormatSpec> parse_format_specs(const std::string& list) {
  std::vector<FormatSpec> out;
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(at, comma - at);
    at = comma + 1;
    if (item.empty()) continue;
    if (item == "all") {
      for (const Format f : parse_format_list("all")) out.push_back(parse_format_spec(format_name(f)));
      continue;
    }
    out.push_back(parse_format_spec(item));
  }
  if (out.empty()) throw Error("empty format list '" + list + "'");
  return out;
}

void apply_format_spec(Model& model, const FormatSpec& spec, FissionMode mode, Rounding rounding) {
  set_model_format(model, Format::f32);
  for (const auto& [sel, f] : spec.parts) {
    std::vector<std::string> layers;
    if (!sel.empty()) layers.push_back(sel);
    set_model_format(model, f, mode, layers, rounding);
  }
}

Format layer_format(const Layer& layer) {
  if (!gemm_layer(layer)) return Format::f32;
  return format_from_name(layer.attrs().get_str("format", "f32"));
}

int set_model_format(Model& model, Format format, FissionMode mode,
                     const std::vector<std::string>& layers, Rounding rounding) {
  if (!fission_supports(format))
    throw Error(std::string("set_model_format: format '") + format_name(format) +
                "' is not supported by the fission GEMM");
  std::vector<char> used(layers.size(), 0);
  int changed = 0;
  for (Node& n : model.nodes()) {
    Layer& l = *n.layer;
    if (!gemm_layer(l)) continue;
    bool pick = layers.empty();
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i] == n.name || layers[i] == l.type()) {
        pick = true;
        used[i] = 1;
      }
    if (!pick) continue;
    if (format == Format::f32) {
      l.erase_attr("format");
      l.erase_attr("fission_mode");
      l.erase_attr("rounding");
    } else {
      l.set_attr("format", std::string(format_name(format)));
      l.set_attr("fission_mode", std::string(fission_mode_name(mode)));
      l.set_attr("rounding", std::string(rounding_name(rounding)));
    }
    ++changed;
  }
  for (size_t i = 0; i < layers.size(); ++i)
    if (!used[i])
      throw Error("set_model_format: '" + layers[i] + "' names no conv or fc layer of the model");
  return changed;
}

}  // namespace deftnn
