// deftnn: image classification data sets. MNIST-family IDX files (Fashion-MNIST, MNIST), read
// gzip-compressed or plain, validated against their headers, as NCHW fp32 tensors.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "deftnn/tensor.h"

namespace deftnn {

struct Dataset {
  Tensor images;                 // [N, C, H, W] fp32, pixel bytes scaled to [0, 1]
  std::vector<int32_t> labels;   // N labels, each in [0, num_classes)
  int num_classes = 0;
  std::string name;              // e.g. "fashion-mnist/t10k"

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

// Reads an IDX image file (magic 0x00000803: N x H x W unsigned bytes) and an IDX label file
// (magic 0x00000801: N unsigned bytes), each gzip-compressed or plain (detected from the
// content, not the name). Images become [N, 1, H, W] scaled by 1/255. limit >= 0 keeps only the
// first `limit` samples (and reads only those). Throws Error naming the file on: a missing file
// (with how to get the data), bad magic, absurd dimensions, a file shorter or longer than its
// header says, image/label counts that differ, a label >= num_classes.
Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t limit = -1, int num_classes = 10);

// Where the Debian package dataset-fashion-mnist installs the data,
// /usr/share/datasets/fashion-mnist, unless the environment variable DEFTNN_DATA names another
// directory.
std::string default_fashion_mnist_dir();

// Loads {train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz) from dir (an empty dir means
// default_fashion_mnist_dir()). The .gz name is preferred; the uncompressed name is accepted.
Dataset load_fashion_mnist(const std::string& dir, bool train, int64_t limit = -1);

// A copy with `pad` zero pixels on every side of each image (28x28 -> 32x32 with pad 2).
Dataset pad_images(const Dataset& d, int pad);

// x = (x - mean) / stddev over every pixel, in place. stddev must be > 0.
void normalize(Dataset& d, float mean, float stddev);

// The samples `indices` of d (each in [0, d.size()), in the order given), named `name` (empty:
// d's name). Throws Error on an index out of range.
Dataset subset(const Dataset& d, const std::vector<int64_t>& indices, const std::string& name = "");

// A validation split held out of a training set, so that model selection never looks at the
// test set: `validation_size` of the `total` sample indices are drawn by a seeded partial
// Fisher-Yates shuffle (deftnn::Rng, so the same seed gives the same split on every platform);
// the rest stay for training. Both lists are ascending and together are 0..total-1 exactly once.
struct ValidationSplit {
  int64_t total = 0;                          // size of the set the split was taken from
  uint64_t seed = 0;
  std::vector<int64_t> train_indices;         // ascending, total - validation_size of them
  std::vector<int64_t> validation_indices;    // ascending, validation_size of them
};

// The seed `deftnn train --val-from-train` and the optimiser use unless told otherwise.
inline constexpr uint64_t kValidationSplitSeed = 2017;

// Throws Error unless 1 <= validation_size <= total / 2 (a split that keeps fewer training
// samples than it holds out is taken for a mistake, e.g. a count meant for another set).
ValidationSplit make_validation_split(int64_t total, int64_t validation_size,
                                      uint64_t seed = kValidationSplitSeed);

// The training and validation sets of `split` applied to `full` (full.size() must equal
// split.total), named "<name> minus N held out (seed S)" and "<name> held out N (seed S)".
struct TrainValidation {
  Dataset train, validation;
};
TrainValidation apply_validation_split(const Dataset& full, const ValidationSplit& split);

// What a split was: `held_out` of the first `total` training samples, drawn with `seed`. Because
// the draw is a partial shuffle, a split of fewer samples with the same total and seed holds out
// a subset of these (so validating on it never sees images trained on). held_out 0: none.
struct HeldOut {
  int64_t held_out = 0;
  int64_t total = 0;
  uint64_t seed = kValidationSplitSeed;
  bool empty() const { return held_out == 0; }
  std::string describe() const;   // "5000 of the first 60000 training images (seed 2017)"
};
inline ValidationSplit make_validation_split(const HeldOut& h) {
  return make_validation_split(h.total, h.held_out, h.seed);
}
// As model-file metadata (keys validation_held_out, validation_held_out_of,
// validation_split_seed; deftnn train writes them) and back; reading throws Error on malformed
// values and returns an empty HeldOut when the keys are absent.
void write_held_out(std::map<std::string, std::string>& meta, const HeldOut& h);
HeldOut read_held_out(const std::map<std::string, std::string>& meta);

}  // namespace deftnn
