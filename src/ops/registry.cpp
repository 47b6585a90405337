// The layer registry: registry name -> factory.
#include <cstring>
#include <utility>

#include "deftnn/error.h"
#include "deftnn/layer.h"
#include "ops/layers.h"

namespace deftnn {
namespace {

using Factory = std::unique_ptr<Layer> (*)(const Attrs&);
const std::pair<const char*, Factory> kLayers[] = {
    {"conv", ops::make_conv},       {"fc", ops::make_fc},
    {"relu", ops::make_relu},       {"maxpool", ops::make_maxpool},
    {"avgpool", ops::make_avgpool}, {"lrn", ops::make_lrn},
    {"dropout", ops::make_dropout}, {"softmax", ops::make_softmax},
    {"flatten", ops::make_flatten}, {"batchnorm", ops::make_batchnorm},
    {"concat", ops::make_concat},   {"add", ops::make_add},
    {"clip", ops::make_clip},       {"sigmoid", ops::make_sigmoid},
    {"mul", ops::make_mul},         {"eltwise_const", ops::make_eltwise_const},
    {"reshape", ops::make_reshape}, {"pad", ops::make_pad},
    {"constant", ops::make_constant},
};

}  // namespace

std::unique_ptr<Layer> make_layer(const std::string& type, const Attrs& attrs) {
  for (const auto& [name, factory] : kLayers) {
    if (type != name) continue;
    try {
      return factory(attrs);
    } catch (const Error& e) {
      // Attribute getters do not know the layer; make every message start with its type.
      std::string msg = e.what();
      if (msg.rfind(type + ":", 0) == 0) throw;
      throw Error(type + ": " + msg);
    }
  }
  std::string list;
  for (const auto& [name, factory] : kLayers) list += (list.empty() ? "" : ", ") + std::string(name);
  throw Error("unknown layer type '" + type + "' (known: " + list + ")");
}

std::vector<std::string> layer_types() {
  std::vector<std::string> v;
  for (const auto& [name, factory] : kLayers) v.emplace_back(name);
  return v;
}

}  // namespace deftnn
