// NumPy .npy arrays (float32 in and out; float64 converted on read), with header validation.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/onnx.h"

namespace deftnn {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& msg) {
  throw Error("npy '" + path + "': " + msg);
}

// The value of 'key' in the header dictionary (a Python literal), up to the next top-level comma.
std::string dict_value(const std::string& h, const std::string& key, const std::string& path) {
  const std::string k = "'" + key + "'";
  auto p = h.find(k);
  if (p == std::string::npos) bad(path, "header lacks '" + key + "'");
  p = h.find(':', p + k.size());
  if (p == std::string::npos) bad(path, "header entry '" + key + "' has no value");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  size_t e = p;
  if (e < h.size() && h[e] == '(') {
    e = h.find(')', e);
    if (e == std::string::npos) bad(path, "unterminated shape tuple");
    return h.substr(p, e - p + 1);
  }
  while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
  return h.substr(p, e - p);
}

}  // namespace

Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) bad(path, "cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string b = ss.str();
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) bad(path, "not a NumPy .npy file (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) bad(path, "truncated header");
    uint32_t v;
    std::memcpy(&v, b.data() + 8, 4);
    hlen = v;
    hstart = 12;
  } else {
    bad(path, "unsupported format version " + std::to_string(major));
  }
  if (hstart + hlen > b.size()) bad(path, "truncated header");
  const std::string h = b.substr(hstart, hlen);
  std::string descr = dict_value(h, "descr", path);
  const std::string order = dict_value(h, "fortran_order", path);
  const std::string shp = dict_value(h, "shape", path);
  if (order.find("False") != 0) bad(path, "Fortran-order arrays are not supported");
  size_t es = 0;
  if (descr == "'<f4'" || descr == "'float32'") es = 4;
  else if (descr == "'<f8'" || descr == "'float64'") es = 8;
  else bad(path, "dtype " + descr + " is not supported (float32 or float64, little-endian)");
  if (shp.size() < 2 || shp.front() != '(' || shp.back() != ')') bad(path, "bad shape " + shp);
  Shape s;
  std::string inner = shp.substr(1, shp.size() - 2);
  std::stringstream is(inner);
  std::string tok;
  while (std::getline(is, tok, ',')) {
    size_t a = tok.find_first_not_of(' ');
    if (a == std::string::npos) continue;
    try {
      size_t used = 0;
      long long v = std::stoll(tok.substr(a), &used);
      if (v < 0) throw std::invalid_argument(tok);
      s.push_back(v);
    } catch (const std::exception&) {
      bad(path, "bad shape " + shp);
    }
  }
  int64_t n = 1;
  for (int64_t d : s) {
    if (d != 0 && n > (int64_t{1} << 40) / d) bad(path, "shape " + shp + " is too large");
    n *= d;
  }
  const size_t data = hstart + hlen;
  if (b.size() - data != static_cast<size_t>(n) * es)
    bad(path, "holds " + std::to_string(b.size() - data) + " data bytes, shape " + shp + " needs " +
                  std::to_string(static_cast<size_t>(n) * es));
  if (s.empty()) s = {1};
  Tensor t(s);
  if (es == 4) {
    std::memcpy(t.data(), b.data() + data, static_cast<size_t>(n) * 4);
  } else {
    for (int64_t k = 0; k < n; ++k) {
      double v;
      std::memcpy(&v, b.data() + data + k * 8, 8);
      t[k] = static_cast<float>(v);
    }
  }
  return t;
}

void write_npy(const Tensor& t, const std::string& path) {
  std::string shp = "(";
  for (size_t k = 0; k < t.shape().size(); ++k) shp += (k ? ", " : "") + std::to_string(t.shape()[k]);
  shp += t.shape().size() == 1 ? ",)" : ")";
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shp + ", }";
  const size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>((h.size() >> 8) & 0xff);
  out += h;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) bad(path, "cannot write");
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    f.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.numel() * 4));
    if (!f) bad(path, "write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) bad(path, "cannot write");
}

}  // namespace deftnn
