// deftnn: the paper's six networks, as Caffe defined them.
#pragma once
#include <string>
#include <vector>

#include "deftnn/model.h"

namespace deftnn {

struct ZooOptions {
  Shape input;          // one sample's [C, H, W]; empty = the network's own (e.g. 3x227x227)
  int num_classes = 0;  // 0 = the network's own
};

// Names: lenet, cifarnet, caffenet, flickr_style, flowers102, sos.
Model build_zoo(const std::string& name, const ZooOptions& options = {});
std::vector<std::string> zoo_names();
std::string zoo_description(const std::string& name);
// The base SGD learning rate (momentum 0.9) `deftnn train` uses for the network when none is
// given: Caffe's solver's, or what was measured to train it on Fashion-MNIST (0.01 otherwise).
double zoo_learning_rate(const std::string& name);

}  // namespace deftnn
