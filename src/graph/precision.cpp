// set_model_format: the per-layer inference format of conv and fc (see deftnn/precision.h).
#include "deftnn/precision.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "deftnn/error.h"
#include "deftnn/gemm.h"
#include "deftnn/tensor.h"
#include "gemm/fission.h"
#include "ops/fission_weights.h"

namespace deftnn {
namespace {

bool gemm_layer(const Layer& l) { return l.type() == "conv" || l.type() == "fc"; }

}  // namespace

FissionMode fission_mode_from_name(const std::string& name) {
  if (name == "fission") return FissionMode::fission;
  if (name == "offchip") return FissionMode::offchip;
  if (name == "bf16_dot") return FissionMode::bf16_dot;
  throw Error("unknown fission mode '" + name + "' (expected fission, offchip or bf16_dot)");
}

const char* fission_mode_name(FissionMode m) {
  return m == FissionMode::offchip ? "offchip" : m == FissionMode::bf16_dot ? "bf16_dot" : "fission";
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

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// GFLOP/s of a team of `threads` running a peak probe: each thread keeps its best of `trials`
// short runs timed on its own (a sibling preempted by another process does not count against
// it, as a barrier-to-barrier time would), and the team's peak is the sum.
double probe_gflops(int threads, double (*probe)(int64_t), double flops_per_iter, int trials) {
  const int64_t iters = 100000;   // ~0.4 ms per trial: short enough to fit between preemptions
  double total = 0, sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total, sink)
  {
    double best = 0;
    for (int t = 0; t < trials; ++t) {
      const double t0 = seconds_now();
      sink += probe(iters);
      best = std::max(best, iters * flops_per_iter / (seconds_now() - t0) * 1e-9);
    }
    total += best;
  }
  volatile double keep = sink;
  (void)keep;
  return total;
}

}  // namespace

MachineRoof measure_roof(int threads) {
  MachineRoof r;
  r.threads = std::max(1, threads);
  const Isa isa = active_isa();
  if (isa >= Isa::avx512) r.fp32_gflops = probe_gflops(r.threads, gemm::peak_fma__avx512, 12 * 32, 40);
  else if (isa == Isa::avx2) r.fp32_gflops = probe_gflops(r.threads, gemm::peak_fma__avx2, 12 * 16, 40);
  if (isa == Isa::avx512_bf16)
    r.bf16_gflops = probe_gflops(r.threads, gemm::peak_dpbf16__avx512bf16, 12 * 64, 40);
  // DRAM: 256 MiB (8x a 32 MiB L3) summed by all threads, best of 5 after one touch pass.
  const int64_t n = int64_t{64} << 20;
  float* buf = aligned_alloc_floats(n);
#pragma omp parallel for num_threads(r.threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) buf[i] = 1.0f;
  double sink = 0;
  for (int t = 0; t < 5; ++t) {
    const double t0 = seconds_now();
    double s = 0;
#pragma omp parallel num_threads(r.threads) reduction(+ : s)
    {
      const int64_t chunk = n / omp_get_num_threads() / 64 * 64;
      const float* p = buf + omp_get_thread_num() * chunk;
      if (isa >= Isa::avx512) {
        s += gemm::read_sum__avx512(p, chunk);
      } else {
        // 64 independent partial sums: bound by the loads, not by one chain of adds.
        float acc[64] = {};
        for (int64_t i = 0; i < chunk; i += 64)
          for (int j = 0; j < 64; ++j) acc[j] += p[i + j];
        for (float a : acc) s += a;
      }
    }
    const double dt = seconds_now() - t0;
    sink += s;
    r.dram_gbps = std::max(r.dram_gbps, n * 4.0 / dt * 1e-9);
  }
  aligned_free(buf);
  volatile double keep = sink;
  (void)keep;
  return r;
}

LayerRoof layer_roof(const Model& model, int node, int64_t batch, const MachineRoof& roof) {
  LayerRoof lr;
  check(node >= 0 && node < static_cast<int>(model.nodes().size()),
        "layer_roof: node " + std::to_string(node) + " out of range");
  const Node& nd = model.nodes()[static_cast<size_t>(node)];
  Layer& l = *nd.layer;
  const std::vector<Shape> vs = model.value_shapes(batch);
  auto numel = [](const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
  };
  std::vector<Shape> ins;
  for (int v : nd.inputs) ins.push_back(vs[static_cast<size_t>(v)]);
  const Shape& out = vs[static_cast<size_t>(node) + 1];
  lr.flops = l.flops(ins, out);
  const Format f = layer_format(l);
  const std::string lm = l.attrs().get_str("fission_mode", "fission");
  // A conv in a software-widened format with many output columns keeps its weights widened
  // once, in fp32 (ops/conv.cpp).
  const bool widened_once =
      l.type() == "conv" && out.size() == 4 &&
      ops::conv_widens_once(ops::parse_fission_attrs(l.attrs(), l.type()),
                            out[0] * out[2] * out[3], active_isa());
  double bytes = 0;
  if (Param* w = l.param("weight"))
    bytes += static_cast<double>(encoded_bytes(widened_once ? Format::f32 : f, w->value.numel()));
  if (Param* b = l.param("bias")) bytes += 4.0 * b->value.numel();
  for (const Shape& s : ins) bytes += 4.0 * numel(s);
  bytes += 4.0 * numel(out);
  lr.bytes = bytes;
  const bool native = roof.bf16_gflops > 0 &&
                      ((f == Format::bf16 && lm != "offchip") ||
                       (is_deft8(f) && lm == "bf16_dot" && cpu_has_avx512vbmi()));
  const double peak = native ? roof.bf16_gflops : roof.fp32_gflops;
  const double t_flops = peak > 0 ? lr.flops / (peak * 1e9) : 0.0;
  const double t_bytes = roof.dram_gbps > 0 ? bytes / (roof.dram_gbps * 1e9) : 0.0;
  lr.memory_bound = t_bytes > t_flops;
  lr.roof_ms = std::max(t_flops, t_bytes) * 1e3;
  return lr;
}

}  // namespace deftnn
