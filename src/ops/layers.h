// Factories of the layers in src/ops (internal; users call deftnn::make_layer).
#pragma once
#include <memory>

#include "deftnn/layer.h"

namespace deftnn::ops {

std::unique_ptr<Layer> make_conv(const Attrs& a);
std::unique_ptr<Layer> make_fc(const Attrs& a);
std::unique_ptr<Layer> make_relu(const Attrs& a);
std::unique_ptr<Layer> make_maxpool(const Attrs& a);
std::unique_ptr<Layer> make_avgpool(const Attrs& a);
std::unique_ptr<Layer> make_lrn(const Attrs& a);
std::unique_ptr<Layer> make_dropout(const Attrs& a);
std::unique_ptr<Layer> make_softmax(const Attrs& a);
std::unique_ptr<Layer> make_flatten(const Attrs& a);
std::unique_ptr<Layer> make_batchnorm(const Attrs& a);
std::unique_ptr<Layer> make_concat(const Attrs& a);
std::unique_ptr<Layer> make_add(const Attrs& a);
// src/ops/elementwise.cpp: layers ONNX models need beyond the Caffe set.
std::unique_ptr<Layer> make_clip(const Attrs& a);
std::unique_ptr<Layer> make_sigmoid(const Attrs& a);
std::unique_ptr<Layer> make_mul(const Attrs& a);
std::unique_ptr<Layer> make_eltwise_const(const Attrs& a);
std::unique_ptr<Layer> make_reshape(const Attrs& a);
std::unique_ptr<Layer> make_pad(const Attrs& a);
std::unique_ptr<Layer> make_constant(const Attrs& a);

}  // namespace deftnn::ops
