// Attrs: typed key/value hyper-parameters of a layer, and Layer::param.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/layer.h"

namespace deftnn {
namespace {

const char* kind_name(const AttrValue& v) {
  switch (v.index()) {
    case 0: return "an int";
    case 1: return "a float";
    case 2: return "a list of ints";
    default: return "a string";
  }
}

std::string float_str(double d) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::general);
  std::string s(buf, res.ptr);
  // Keep floats recognisable as floats ("1.0", not "1").
  if (std::isfinite(d) && s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// max_list: a longer list shows its first max_list - 2 values and its length.
std::string value_str(const AttrValue& v, bool quote = true, size_t max_list = SIZE_MAX) {
  std::ostringstream os;
  switch (v.index()) {
    case 0: os << std::get<int64_t>(v); break;
    case 1: os << float_str(std::get<double>(v)); break;
    case 2: {
      const auto& l = std::get<std::vector<int64_t>>(v);
      const bool cut = l.size() > max_list && max_list >= 3;
      const size_t shown = cut ? max_list - 2 : l.size();
      os << '[';
      for (size_t i = 0; i < shown; ++i) os << (i ? ", " : "") << l[i];
      if (cut) os << ", ... (" << l.size() << " values)";
      os << ']';
      break;
    }
    default:
      if (quote) os << '"' << std::get<std::string>(v) << '"';
      else os << std::get<std::string>(v);
      break;
  }
  return os.str();
}

[[noreturn]] void bad_type(const std::string& key, const AttrValue& v, const char* want) {
  throw Error("attribute '" + key + "' is " + kind_name(v) + " (" + value_str(v) + "), expected " +
              want);
}

}  // namespace

int64_t Attrs::get_int(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw Error("missing required attribute '" + key + "'");
  const AttrValue& v = it->second;
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* l = std::get_if<std::vector<int64_t>>(&v); l && l->size() == 1) return (*l)[0];
  bad_type(key, v, "an int");
}

int64_t Attrs::get_int(const std::string& key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}

double Attrs::get_float(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw Error("missing required attribute '" + key + "'");
  const AttrValue& v = it->second;
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  bad_type(key, v, "a float");
}

double Attrs::get_float(const std::string& key, double def) const {
  return has(key) ? get_float(key) : def;
}

std::vector<int64_t> Attrs::get_ints(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw Error("missing required attribute '" + key + "'");
  const AttrValue& v = it->second;
  if (auto* l = std::get_if<std::vector<int64_t>>(&v)) return *l;
  if (auto* i = std::get_if<int64_t>(&v)) return {*i};
  bad_type(key, v, "an int or a list of ints");
}

std::vector<int64_t> Attrs::get_ints(const std::string& key, std::vector<int64_t> def) const {
  return has(key) ? get_ints(key) : def;
}

std::string Attrs::get_str(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw Error("missing required attribute '" + key + "'");
  const AttrValue& v = it->second;
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  bad_type(key, v, "a string");
}

std::string Attrs::get_str(const std::string& key, const std::string& def) const {
  return has(key) ? get_str(key) : def;
}

void Attrs::check_keys(const std::string& layer_type, const std::vector<std::string>& allowed) const {
  for (const auto& [key, v] : items_) {
    bool ok = false;
    for (const auto& a : allowed) ok = ok || a == key;
    if (ok) continue;
    std::string list;
    for (size_t i = 0; i < allowed.size(); ++i) list += (i ? ", " : "") + allowed[i];
    throw Error(layer_type + ": unknown attribute '" + key + "' (allowed: " +
                (list.empty() ? std::string("none") : list) + ")");
  }
}

std::string Attrs::str(size_t max_list) const {
  std::string s;
  for (const auto& [key, v] : items_) {
    if (!s.empty()) s += ' ';
    s += key + "=" + value_str(v, false, max_list);
  }
  return s;
}

void Layer::attrs_changed(const std::string& key) {
  throw Error(type() + ": attribute '" + key + "' cannot be changed after construction");
}

void Layer::set_attr(const std::string& key, AttrValue value) {
  const Attrs old = attrs_;
  attrs_.set_value(key, std::move(value));
  try {
    attrs_changed(key);
  } catch (...) {
    attrs_ = old;
    throw;
  }
}

void Layer::erase_attr(const std::string& key) {
  if (!attrs_.has(key)) return;
  const Attrs old = attrs_;
  attrs_.erase(key);
  try {
    attrs_changed(key);
  } catch (...) {
    attrs_ = old;
    throw;
  }
}

Param* Layer::param(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace deftnn
