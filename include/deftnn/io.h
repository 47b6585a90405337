// deftnn: native model files. A model file stores a Model's graph (input shape, nodes with their
// layer type, attributes and inputs) and every parameter in fp32, plus a small string map of
// metadata (training info, class names), in a versioned little-endian binary format with a
// length and a CRC32, so that a truncated or corrupted file is rejected with a clear message
// instead of loading wrong weights.
//
// Format version 1 (all integers little-endian; "str" = u32 byte length + bytes):
//   magic          8 bytes  "DEFTNN\0\1"
//   version        u32      1
//   total_length   u64      size of the whole file in bytes, trailer included
//   input rank     u32, then rank x i64 dims (one sample, no batch dimension)
//   metadata       u32 count, then count x (str key, str value), keys sorted
//   nodes          u32 count, then per node:
//     name str, type str
//     attrs        u32 count, then per attr: str key, u8 tag, value by tag:
//                    0 = i64, 1 = f64 (IEEE bits), 2 = u32 n + n x i64, 3 = str
//     inputs       u32 count, then count x i32 value ids (0 = model input, i + 1 = node i)
//     params       u32 count, then per param: str name, u8 flags (bit 0 = trainable),
//                    f32 lr_mult, f32 decay_mult, u32 rank, rank x i64 dims, numel x f32
//   trailer        u64 total_length (again), u32 CRC32 (zlib) of every byte before it
#pragma once
#include <map>
#include <string>

#include "deftnn/model.h"

namespace deftnn {

using ModelMetadata = std::map<std::string, std::string>;

// The file format version this build writes and the only one it reads.
constexpr uint32_t kModelFormatVersion = 1;

// Writes `m` (graph, parameters, trainable flags and lr/decay multipliers) and `meta` to path.
// Atomic: the data goes to path.tmp.<pid> in the same directory, is fsync'ed, then renamed over
// path, so an interrupted or failed save never destroys an existing file. Throws Error naming
// the path on any write failure (missing directory, disk full, permissions).
void save_model(const Model& m, const std::string& path, const ModelMetadata& meta = {});

// Reads a model file written by save_model, rebuilding the graph with make_layer/Model::add
// and copying the stored parameters in. When meta is given, it receives the stored metadata.
// Validates everything, and throws Error naming the file and what is wrong: missing file, not a
// deftnn model, unsupported version, truncation (naming the field), checksum mismatch, counts or
// shapes that claim more bytes than the file holds (checked before allocating), and an
// inconsistent graph (bad input id, unknown layer type, duplicate names, parameters that do not
// match what shape inference creates).
Model load_model(const std::string& path, ModelMetadata* meta = nullptr);

// Only the metadata of a model file (validates the whole file all the same).
ModelMetadata load_model_metadata(const std::string& path);

}  // namespace deftnn
