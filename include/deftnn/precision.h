// deftnn: choosing the number format a model's GEMM layers run in at inference (issue 4,
// near-compute data fission). The format is a layer attribute (`format`, `fission_mode`,
// `rounding` on conv and fc; see src/ops/fission_weights.h), so it is saved with the model and
// only an inference forward uses it; training always runs fp32.
#pragma once
#include <string>
#include <vector>

#include "deftnn/fission.h"
#include "deftnn/formats.h"
#include "deftnn/model.h"

namespace deftnn {

// Sets the weight format of the conv and fc layers of `model` selected by `layers`: an entry
// matches a node name or a layer type ("conv", "fc"); empty selects every conv and fc layer.
// Format::f32 removes the attributes (the plain fp32 layer). Throws Error when an entry matches
// no conv/fc node or the format is not one fission_gemm supports. Returns the layers changed.
int set_model_format(Model& model, Format format, FissionMode mode = FissionMode::fission,
                     const std::vector<std::string>& layers = {},
                     Rounding rounding = Rounding::nearest_even);

// The format a layer's inference forward uses (Format::f32 for layers without fission).
Format layer_format(const Layer& layer);

// A comma-separated list of format names ("f32,half,deft16"); "all" is every format the layers
// support, in the order f32, half, deft16, deft16q, bf16, deft8_e1 .. deft8_e7. Throws Error on
// an unknown or unsupported name.
std::vector<Format> parse_format_list(const std::string& list);

// A weight-format assignment for a whole model, by layer type or node name: "deft16" (every conv
// and fc layer), or parts joined by '+', each "SELECTOR:FORMAT" where SELECTOR is a layer type or
// a node name, e.g. "conv:bf16+fc:deft8_e4" (the paper's Deft-8H: 8-bit fully connected weights,
// bf16 convolution). Layers no part selects stay f32; a later part overrides an earlier one.
struct FormatSpec {
  std::string name;                                    // as written
  std::vector<std::pair<std::string, Format>> parts;   // selector ("" = every conv/fc), format
  bool single() const { return parts.size() == 1 && parts[0].first.empty(); }
};
FormatSpec parse_format_spec(const std::string& spec);
// Comma-separated specs; "all" expands as in parse_format_list.
std::vector<FormatSpec> parse_format_specs(const std::string& list);
// Resets every conv/fc layer to f32, then applies the parts in order.
void apply_format_spec(Model& model, const FormatSpec& spec,
                       FissionMode mode = FissionMode::fission,
                       Rounding rounding = Rounding::nearest_even);

// ---- Roofline (deftnn bench --formats; paper Fig. 11/12 with the bytes moved per FLOP) ----
// This machine's roofs, measured in this process with `threads` threads: the fp32 FMA peak of
// the active ISA (12 independent FMA chains per thread), the native bf16 peak (vdpbf16ps; 0
// without avx512_bf16), and the DRAM read bandwidth (a 256 MiB array summed by all threads).
// Each is the best of many short trials (a loaded machine only lowers a trial). ~0.5 s.
struct MachineRoof {
  int threads = 0;
  double fp32_gflops = 0, bf16_gflops = 0, dram_gbps = 0;
};
MachineRoof measure_roof(int threads);

// One conv / fc node at `batch` under its format: FLOPs; bytes moved = weights in the stored
// format (+ fp32 bias) + fp32 input and output activations, each once (the least any engine
// must move from memory); roof = max(FLOPs at the format's compute peak - the bf16 peak for
// native bf16 in fission mode, else fp32 -, bytes at the DRAM bandwidth).
struct LayerRoof {
  int64_t flops = 0;
  double bytes = 0, roof_ms = 0;
  bool memory_bound = false;
};
LayerRoof layer_roof(const Model& model, int node, int64_t batch, const MachineRoof& roof);

// Parses "fission" / "offchip"; throws Error otherwise.
FissionMode fission_mode_from_name(const std::string& name);
const char* fission_mode_name(FissionMode m);

}  // namespace deftnn
