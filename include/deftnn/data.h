// deftnn: image classification data sets. MNIST-family IDX files (Fashion-MNIST, MNIST), read
// gzip-compressed or plain, validated against their headers, as NCHW fp32 tensors.
#pragma once
#include <cstdint>
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

}  // namespace deftnn
