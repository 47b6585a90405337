// The paper's networks (DeftNN §5.1, Table 2), layer for layer as in Caffe's model zoo:
//  lenet     examples/mnist/lenet_train_test.prototxt
//  cifarnet  examples/cifar10/cifar10_full_train_test.prototxt
//  caffenet  models/bvlc_reference_caffenet/train_val.prototxt (AlexNet with pool before norm)
//  flickr_style / flowers102 / sos: CaffeNet fine-tuned with a 20 / 102 / 5-way fc8.
#include "deftnn/zoo.h"

#include "deftnn/error.h"

namespace deftnn {

namespace {

Attrs conv(int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t groups, const char* filler,
           double std, double bias = 0.0) {
  return Attrs()
      .set("out_channels", out)
      .set("kernel", k)
      .set("stride", stride)
      .set("pad", pad)
      .set("groups", groups)
      .set("weight_filler", filler)
      .set("weight_std", std)
      .set("bias_value", bias);
}
Attrs fc(int64_t out, const char* filler, double std, double bias = 0.0) {
  return Attrs().set("out_features", out).set("weight_filler", filler).set("weight_std", std).set(
      "bias_value", bias);
}
Attrs pool(int64_t k, int64_t s) { return Attrs().set("kernel", k).set("stride", s); }
Attrs lrn(int64_t size, double alpha, double beta) {
  return Attrs().set("size", size).set("alpha", alpha).set("beta", beta).set("k", 1.0);
}

Model lenet(const ZooOptions& o) {
  Model m(o.input.empty() ? Shape{1, 28, 28} : o.input);
  int classes = o.num_classes ? o.num_classes : 10;
  m.add("conv1", "conv", conv(20, 5, 1, 0, 1, "xavier", 0.0));
  m.add("pool1", "maxpool", pool(2, 2));
  m.add("conv2", "conv", conv(50, 5, 1, 0, 1, "xavier", 0.0));
  m.add("pool2", "maxpool", pool(2, 2));
  m.add("ip1", "fc", fc(500, "xavier", 0.0));
  m.add("relu1", "relu", Attrs());
  m.add("ip2", "fc", fc(classes, "xavier", 0.0));
  return m;
}

// cifar10_full uses LRN WITHIN_CHANNEL (local_size 3, alpha 5e-5); deftnn's LRN is the
// across-channel form (AlexNet, ONNX), so cifarnet uses it across 3 channels with the same
// constants. Documented in the README.
Model cifarnet(const ZooOptions& o) {
  Model m(o.input.empty() ? Shape{3, 32, 32} : o.input);
  int classes = o.num_classes ? o.num_classes : 10;
  // Caffe's cifar10 data layer feeds raw 0..255 pixels minus the training-set mean, which is what
  // conv1's tiny gaussian (std 1e-4) is scaled for. Our data sets hold [0, 1], so the network
  // starts with that transform: x * 255 - mean, with the mean pixel of Fashion-MNIST padded to
  // 32x32 (0.219 * 255); any constant near the data's mean does the same job.
  m.add("data_scale", "eltwise_const", Attrs().set("op", "mul").set("value_shape", std::vector<int64_t>{1, 1, 1, 1}));
  m.nodes().back().layer->param("value")->value[0] = 255.0f;
  m.add("data_mean", "eltwise_const", Attrs().set("op", "add").set("value_shape", std::vector<int64_t>{1, 1, 1, 1}));
  m.nodes().back().layer->param("value")->value[0] = -0.219f * 255.0f;
  m.add("conv1", "conv", conv(32, 5, 1, 2, 1, "gaussian", 0.0001));
  m.add("pool1", "maxpool", pool(3, 2));
  m.add("relu1", "relu", Attrs());
  m.add("norm1", "lrn", lrn(3, 5e-5, 0.75));
  m.add("conv2", "conv", conv(32, 5, 1, 2, 1, "gaussian", 0.01));
  m.add("relu2", "relu", Attrs());
  m.add("pool2", "avgpool", pool(3, 2));
  m.add("norm2", "lrn", lrn(3, 5e-5, 0.75));
  m.add("conv3", "conv", conv(64, 5, 1, 2, 1, "gaussian", 0.01));
  m.add("relu3", "relu", Attrs());
  m.add("pool3", "avgpool", pool(3, 2));
  m.add("ip1", "fc", fc(classes, "gaussian", 0.01));
  return m;
}

Model caffenet(const ZooOptions& o, int default_classes) {
  Model m(o.input.empty() ? Shape{3, 227, 227} : o.input);
  int classes = o.num_classes ? o.num_classes : default_classes;
  m.add("conv1", "conv", conv(96, 11, 4, 0, 1, "gaussian", 0.01));
  m.add("relu1", "relu", Attrs());
  m.add("pool1", "maxpool", pool(3, 2));
  m.add("norm1", "lrn", lrn(5, 1e-4, 0.75));
  m.add("conv2", "conv", conv(256, 5, 1, 2, 2, "gaussian", 0.01, 1.0));
  m.add("relu2", "relu", Attrs());
  m.add("pool2", "maxpool", pool(3, 2));
  m.add("norm2", "lrn", lrn(5, 1e-4, 0.75));
  m.add("conv3", "conv", conv(384, 3, 1, 1, 1, "gaussian", 0.01));
  m.add("relu3", "relu", Attrs());
  m.add("conv4", "conv", conv(384, 3, 1, 1, 2, "gaussian", 0.01, 1.0));
  m.add("relu4", "relu", Attrs());
  m.add("conv5", "conv", conv(256, 3, 1, 1, 2, "gaussian", 0.01, 1.0));
  m.add("relu5", "relu", Attrs());
  m.add("pool5", "maxpool", pool(3, 2));
  m.add("fc6", "fc", fc(4096, "gaussian", 0.005, 1.0));
  m.add("relu6", "relu", Attrs());
  m.add("drop6", "dropout", Attrs().set("ratio", 0.5));
  m.add("fc7", "fc", fc(4096, "gaussian", 0.005, 1.0));
  m.add("relu7", "relu", Attrs());
  m.add("drop7", "dropout", Attrs().set("ratio", 0.5));
  m.add("fc8", "fc", fc(classes, "gaussian", 0.01));
  return m;
}

struct Entry {
  const char* name;
  const char* description;
  double lr;   // base SGD learning rate (momentum 0.9), see zoo_learning_rate
};
// Learning rates: Caffe's solvers use 0.01 for LeNet and the CaffeNets. cifar10_full's solver
// uses 0.001; on Fashion-MNIST 0.01 left the network dead in one of two draws (a whole epoch at
// loss ln 10, 10% accuracy, with 5,000 training images held out, seed 2017), 0.005 reached 83.7%
// test top-1 after one epoch of that draw (0.001: 79.7%).
const Entry kEntries[] = {
    {"lenet", "Caffe LeNet: conv 20@5x5, maxpool, conv 50@5x5, maxpool, fc 500, ReLU, fc 10 (1x28x28)", 0.01},
    {"cifarnet", "Caffe cifar10_full: 3 x (conv 5x5, pool 3/2, ReLU, LRN), fc 10 (3x32x32)", 0.005},
    {"caffenet", "bvlc_reference_caffenet (AlexNet, groups=2, pool before LRN), 1000 classes (3x227x227)", 0.01},
    {"flickr_style", "CaffeNet fine-tuned for Flickr Style, 20 classes", 0.01},
    {"flowers102", "CaffeNet fine-tuned for Oxford Flowers, 102 classes", 0.01},
    {"sos", "CaffeNet fine-tuned for Salient Object Subitizing, 5 classes", 0.01},
};

}  // namespace

std::vector<std::string> zoo_names() {
  std::vector<std::string> v;
  for (const Entry& e : kEntries) v.push_back(e.name);
  return v;
}

std::string zoo_description(const std::string& name) {
  for (const Entry& e : kEntries)
    if (name == e.name) return e.description;
  return {};
}

double zoo_learning_rate(const std::string& name) {
  for (const Entry& e : kEntries)
    if (name == e.name) return e.lr;
  return 0.01;
}

Model build_zoo(const std::string& name, const ZooOptions& o) {
  check(o.num_classes >= 0, "zoo: number of classes must be positive");
  check(o.input.empty() || o.input.size() == 3,
        "zoo: input shape must be [C, H, W], got " + shape_str(o.input));
  if (name == "lenet") return lenet(o);
  if (name == "cifarnet") return cifarnet(o);
  if (name == "caffenet") return caffenet(o, 1000);
  if (name == "flickr_style") return caffenet(o, 20);
  if (name == "flowers102") return caffenet(o, 102);
  if (name == "sos") return caffenet(o, 5);
  std::string known;
  for (const Entry& e : kEntries) known += std::string(known.empty() ? "" : ", ") + e.name;
  throw Error("unknown network '" + name + "' (known: " + known + ")");
}

}  // namespace deftnn
