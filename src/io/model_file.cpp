// Native model files: the format is documented in include/deftnn/io.h.
//
// Writing streams the file twice through the same emitter: once into a byte counter (to know
// the total length that the header carries) and once into the temporary file, updating the
// CRC on the way; then fsync and rename. Reading loads the file, checks magic, version and
// length, verifies the CRC (so a flipped bit is named as such), then parses with every read
// bounded by the bytes that remain: a count or a shape that claims more than the file holds
// fails before anything is allocated for it.
#include "deftnn/io.h"
#include "deftnn/onnx.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>
#include <set>

#include "deftnn/error.h"

namespace deftnn {
namespace {

constexpr unsigned char kMagic[8] = {'D', 'E', 'F', 'T', 'N', 'N', 0, 1};
constexpr size_t kHeaderBytes = 8 + 4 + 8;    // magic, version, total length
constexpr size_t kTrailerBytes = 8 + 4;       // total length again, CRC32
constexpr size_t kMinFileBytes = kHeaderBytes + 4 + 4 + 4 + kTrailerBytes;

// Limits on what a file may claim, well above any real network, far below absurd.
constexpr uint32_t kMaxRank = 8;
constexpr uint32_t kMaxName = 4096;              // node, type, key and param names
constexpr uint32_t kMaxText = 16u << 20;         // metadata values and string attributes
constexpr uint32_t kMaxNodes = 1u << 20;
constexpr uint32_t kMaxAttrs = 1024;
constexpr uint32_t kMaxList = 1u << 20;          // int-list attribute length
constexpr uint32_t kMaxInputs = 1u << 16;
constexpr uint32_t kMaxParams = 1024;
constexpr uint32_t kMaxMeta = 1u << 16;
constexpr int64_t kMaxDim = int64_t{1} << 40;

enum AttrTag : uint8_t { kTagInt = 0, kTagFloat = 1, kTagInts = 2, kTagStr = 3 };
static_assert(std::variant_size_v<AttrValue> == 4, "a new Attrs type needs a tag in the model file");

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

uint32_t crc_of(uint32_t crc, const unsigned char* p, size_t n) {
  uLong c = crc;
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

template <class T>
T to_le(T v) {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else {
    T r;
    auto* s = reinterpret_cast<const unsigned char*>(&v);
    auto* d = reinterpret_cast<unsigned char*>(&r);
    for (size_t i = 0; i < sizeof(T); ++i) d[i] = s[sizeof(T) - 1 - i];
    return r;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

// Counts bytes: the first pass, which yields the total length the header records.
struct CountSink {
  uint64_t size = 0;
  void put(const void*, size_t n) { size += n; }
};

// Writes to a FILE*, keeping a running CRC32.
class FileSink {
 public:
  FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void put(const void* p, size_t n) {
    if (n == 0) return;
    crc_ = crc_of(crc_, static_cast<const unsigned char*>(p), n);
    if (std::fwrite(p, 1, n, f_) != n) fail(path_, std::string("write failed: ") + std::strerror(errno));
    size_ += n;
  }
  uint32_t crc() const { return crc_; }
  uint64_t size() const { return size_; }

 private:
  std::FILE* f_;
  const std::string& path_;
  uint32_t crc_ = 0;
  uint64_t size_ = 0;
};

template <class Sink>
class Emitter {
 public:
  explicit Emitter(Sink& s) : s_(s) {}
  template <class T>
  void num(T v) {
    v = to_le(v);
    s_.put(&v, sizeof v);
  }
  void u8(uint8_t v) { s_.put(&v, 1); }
  void u32(uint32_t v) { num(v); }
  void i32(int32_t v) { num(v); }
  void u64(uint64_t v) { num(v); }
  void i64(int64_t v) { num(v); }
  void f32(float v) { num(std::bit_cast<uint32_t>(v)); }
  void f64(double v) { num(std::bit_cast<uint64_t>(v)); }
  void str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    s_.put(s.data(), s.size());
  }
  void floats(const float* p, int64_t n) {
    if constexpr (std::endian::native == std::endian::little) {
      s_.put(p, static_cast<size_t>(n) * sizeof(float));
    } else {
      for (int64_t i = 0; i < n; ++i) f32(p[i]);
    }
  }

 private:
  Sink& s_;
};

// Checks that the model can be represented (lengths and counts within the format's limits), so
// that a save never writes a file that load would reject.
void check_saveable(const Model& m, const ModelMetadata& meta, const std::string& path) {
  auto name_ok = [&](const std::string& s, const std::string& what) {
    if (s.size() > kMaxName)
      fail(path, "cannot save: " + what + " is " + std::to_string(s.size()) + " bytes long (limit " +
                     std::to_string(kMaxName) + ")");
  };
  if (m.input_shape().size() > kMaxRank) fail(path, "cannot save: input rank above " + std::to_string(kMaxRank));
  if (meta.size() > kMaxMeta) fail(path, "cannot save: too many metadata entries");
  for (const auto& [k, v] : meta) {
    name_ok(k, "metadata key '" + k.substr(0, 64) + "'");
    if (v.size() > kMaxText) fail(path, "cannot save: metadata value of '" + k + "' is too long");
  }
  if (m.nodes().size() > kMaxNodes) fail(path, "cannot save: too many nodes");
  for (const Node& n : m.nodes()) {
    const std::string where = "node '" + n.name + "'";
    name_ok(n.name, "a node name");
    if (!n.layer) fail(path, "cannot save: " + where + " has no layer");
    name_ok(n.layer->type(), where + " type");
    const auto& items = n.layer->attrs().items();
    if (items.size() > kMaxAttrs) fail(path, "cannot save: " + where + " has too many attributes");
    for (const auto& [k, v] : items) {
      name_ok(k, where + " attribute key");
      if (const auto* l = std::get_if<std::vector<int64_t>>(&v); l && l->size() > kMaxList)
        fail(path, "cannot save: " + where + " attribute '" + k + "' is too long");
      if (const auto* s = std::get_if<std::string>(&v); s && s->size() > kMaxText)
        fail(path, "cannot save: " + where + " attribute '" + k + "' is too long");
    }
    if (n.inputs.empty() || n.inputs.size() > kMaxInputs)
      fail(path, "cannot save: " + where + " has " + std::to_string(n.inputs.size()) + " inputs");
    if (n.layer->params().size() > kMaxParams) fail(path, "cannot save: " + where + " has too many params");
    for (const Param& p : n.layer->params()) {
      name_ok(p.name, where + " param name");
      if (p.value.shape().size() > kMaxRank || p.value.numel() != shape_numel(p.value.shape()))
        fail(path, "cannot save: " + where + " param '" + p.name + "' has no valid value (shape " +
                       shape_str(p.value.shape()) + ")");
    }
  }
}

template <class Sink>
void emit_model(Emitter<Sink>& e, const Model& m, const ModelMetadata& meta, uint64_t total) {
  for (unsigned char c : kMagic) e.u8(c);
  e.u32(kModelFormatVersion);
  e.u64(total);
  e.u32(static_cast<uint32_t>(m.input_shape().size()));
  for (int64_t d : m.input_shape()) e.i64(d);
  e.u32(static_cast<uint32_t>(meta.size()));
  for (const auto& [k, v] : meta) {
    e.str(k);
    e.str(v);
  }
  e.u32(static_cast<uint32_t>(m.nodes().size()));
  for (const Node& n : m.nodes()) {
    e.str(n.name);
    e.str(n.layer->type());
    const auto& items = n.layer->attrs().items();
    e.u32(static_cast<uint32_t>(items.size()));
    for (const auto& [k, v] : items) {
      e.str(k);
      e.u8(static_cast<uint8_t>(v.index()));
      switch (v.index()) {
        case kTagInt: e.i64(std::get<int64_t>(v)); break;
        case kTagFloat: e.f64(std::get<double>(v)); break;
        case kTagInts: {
          const auto& l = std::get<std::vector<int64_t>>(v);
          e.u32(static_cast<uint32_t>(l.size()));
          for (int64_t x : l) e.i64(x);
          break;
        }
        case kTagStr: e.str(std::get<std::string>(v)); break;
      }
    }
    e.u32(static_cast<uint32_t>(n.inputs.size()));
    for (int id : n.inputs) e.i32(id);
    e.u32(static_cast<uint32_t>(n.layer->params().size()));
    for (const Param& p : n.layer->params()) {
      e.str(p.name);
      e.u8(p.trainable ? 1 : 0);
      e.f32(p.lr_mult);
      e.f32(p.decay_mult);
      e.u32(static_cast<uint32_t>(p.value.shape().size()));
      for (int64_t d : p.value.shape()) e.i64(d);
      e.floats(p.value.data(), p.value.numel());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

struct ParamRec {
  std::string name;
  bool trainable = true;
  float lr_mult = 1, decay_mult = 1;
  Shape shape;
  size_t data_offset = 0;   // into the file buffer
};

struct NodeRec {
  std::string name, type;
  Attrs attrs;
  std::vector<int> inputs;
  std::vector<ParamRec> params;
};

struct FileRec {
  Shape input;
  ModelMetadata meta;
  std::vector<NodeRec> nodes;
};

// Bounded cursor over [0, end) of the file buffer. `truncated` says the file is shorter than
// its header claims, which decides how running out of bytes is reported.
class Reader {
 public:
  Reader(const std::vector<unsigned char>& buf, size_t pos, size_t end, bool truncated,
         const std::string& path)
      : buf_(buf), pos_(pos), end_(end), truncated_(truncated), path_(path) {}

  void set_where(std::string w) { where_ = std::move(w); }
  size_t pos() const { return pos_; }
  size_t remaining() const { return end_ - pos_; }

  [[noreturn]] void bad(const std::string& what) const {
    fail(path_, (where_.empty() ? "" : where_ + ": ") + what);
  }

  // Fails unless `bytes` more bytes are available for `field`.
  void need(uint64_t bytes, const std::string& field) const {
    if (bytes <= remaining()) return;
    if (truncated_)
      fail(path_, "truncated: the file ends inside " + (where_.empty() ? "" : where_ + ", ") + field +
                      " (at byte " + std::to_string(pos_) + " of " + std::to_string(end_) + ")");
    bad(field + " claims " + std::to_string(bytes) + " bytes but only " +
        std::to_string(remaining()) + " remain before the checksum (corrupt or forged file)");
  }

  template <class T>
  T num(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, buf_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return to_le(v);
  }
  uint8_t u8(const std::string& f) { return num<uint8_t>(f); }
  uint32_t u32(const std::string& f) { return num<uint32_t>(f); }
  int32_t i32(const std::string& f) { return num<int32_t>(f); }
  uint64_t u64(const std::string& f) { return num<uint64_t>(f); }
  int64_t i64(const std::string& f) { return num<int64_t>(f); }
  float f32(const std::string& f) { return std::bit_cast<float>(num<uint32_t>(f)); }
  double f64(const std::string& f) { return std::bit_cast<double>(num<uint64_t>(f)); }

  // A count of items of at least min_bytes each, checked against `limit` and the bytes left.
  uint32_t count(const std::string& field, uint32_t limit, uint64_t min_bytes) {
    uint32_t n = u32(field);
    if (n > limit) bad(field + " " + std::to_string(n) + " exceeds the limit " + std::to_string(limit));
    // In a truncated file the reads of the items name the field where it ends; in a complete
    // one, a count that cannot fit is a lie, caught here before anything is sized by it.
    if (!truncated_) need(n * min_bytes, field + " " + std::to_string(n));
    return n;
  }

  std::string str(const std::string& field, uint32_t limit) {
    uint32_t n = u32(field + " length");
    if (n > limit)
      bad(field + " length " + std::to_string(n) + " exceeds the limit " + std::to_string(limit));
    need(n, field);
    std::string s(reinterpret_cast<const char*>(buf_.data() + pos_), n);
    pos_ += n;
    return s;
  }

  // A shape: rank then dims, each dim in [min_dim, kMaxDim].
  Shape shape(const std::string& field, int64_t min_dim) {
    uint32_t rank = u32(field + " rank");
    if (rank > kMaxRank) bad(field + " rank " + std::to_string(rank) + " exceeds the limit " + std::to_string(kMaxRank));
    need(uint64_t{rank} * 8, field + " dims");
    Shape s(rank);
    for (uint32_t i = 0; i < rank; ++i) {
      s[i] = i64(field + " dims");
      if (s[i] < min_dim || s[i] > kMaxDim)
        bad(field + " has an invalid dimension " + std::to_string(s[i]) + " (shape " + shape_str(s) + ")");
    }
    return s;
  }

  // Skips over `n` floats, returning where they start; checked before anything is allocated.
  size_t floats(int64_t n, const std::string& field) {
    need(static_cast<uint64_t>(n) * sizeof(float), field);
    size_t at = pos_;
    pos_ += static_cast<size_t>(n) * sizeof(float);
    return at;
  }

 private:
  const std::vector<unsigned char>& buf_;
  size_t pos_, end_;
  bool truncated_;
  const std::string& path_;
  std::string where_;
};

FileRec parse_body(Reader& r) {
  FileRec rec;
  r.set_where("the header");
  rec.input = r.shape("input shape", 1);
  uint32_t nmeta = r.count("metadata count", kMaxMeta, 8);
  for (uint32_t i = 0; i < nmeta; ++i) {
    std::string k = r.str("metadata key", kMaxName);
    std::string v = r.str("metadata value of '" + k + "'", kMaxText);
    if (!rec.meta.emplace(std::move(k), std::move(v)).second) r.bad("duplicate metadata key");
  }
  uint32_t nnodes = r.count("node count", kMaxNodes, 20);
  // Containers grow as items are read (never sized from a count up front), so memory stays
  // proportional to the bytes actually present even in a truncated file.
  for (uint32_t i = 0; i < nnodes; ++i) {
    NodeRec& n = rec.nodes.emplace_back();
    r.set_where("node " + std::to_string(i));
    n.name = r.str("name", kMaxName);
    r.set_where("node " + std::to_string(i) + " '" + n.name + "'");
    n.type = r.str("layer type", kMaxName);
    uint32_t nattrs = r.count("attribute count", kMaxAttrs, 9);
    for (uint32_t a = 0; a < nattrs; ++a) {
      std::string key = r.str("attribute key", kMaxName);
      if (n.attrs.has(key)) r.bad("duplicate attribute '" + key + "'");
      const std::string f = "attribute '" + key + "'";
      uint8_t tag = r.u8(f + " tag");
      switch (tag) {
        case kTagInt: n.attrs.set(key, r.i64(f)); break;
        case kTagFloat: n.attrs.set(key, r.f64(f)); break;
        case kTagInts: {
          uint32_t len = r.count(f + " list length", kMaxList, 8);
          std::vector<int64_t> l;
          for (uint32_t k = 0; k < len; ++k) l.push_back(r.i64(f));
          n.attrs.set(key, std::move(l));
          break;
        }
        case kTagStr: n.attrs.set(key, r.str(f, kMaxText)); break;
        default: r.bad(f + " has an unknown type tag " + std::to_string(tag));
      }
    }
    uint32_t ninputs = r.count("input count", kMaxInputs, 4);
    for (uint32_t k = 0; k < ninputs; ++k) n.inputs.push_back(r.i32("input id"));
    uint32_t nparams = r.count("param count", kMaxParams, 17);
    for (uint32_t k = 0; k < nparams; ++k) {
      ParamRec& p = n.params.emplace_back();
      p.name = r.str("param name", kMaxName);
      const std::string f = "param '" + p.name + "'";
      uint8_t flags = r.u8(f + " flags");
      if (flags & ~1u) r.bad(f + " has unknown flags " + std::to_string(flags));
      p.trainable = flags & 1u;
      p.lr_mult = r.f32(f + " lr_mult");
      p.decay_mult = r.f32(f + " decay_mult");
      p.shape = r.shape(f + " shape", 0);
      // Dims are <= 2^40 and rank <= 8, but their product may still overflow: shape_numel checks.
      int64_t numel = 0;
      try {
        numel = shape_numel(p.shape);
      } catch (const Error&) {
        r.bad(f + " shape " + shape_str(p.shape) + " has too many elements");
      }
      if (numel > std::numeric_limits<int64_t>::max() / 4)
        r.bad(f + " shape " + shape_str(p.shape) + " has too many elements");
      p.data_offset = r.floats(numel, f + " data (" + shape_str(p.shape) + ")");
    }
  }
  r.set_where("");
  return rec;
}

std::vector<unsigned char> read_file(const std::string& path) {
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) fail(path, "no such model file");
  if (std::filesystem::is_directory(st)) fail(path, "is a directory, not a model file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(path, std::string("cannot open model file: ") + std::strerror(errno));
  std::vector<unsigned char> buf;
  unsigned char chunk[1 << 16];
  size_t got;
  // Read to the end rather than trusting a size query, so the buffer is exactly the file.
  while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + got);
  bool err = std::ferror(f);
  int errnum = errno;
  std::fclose(f);
  if (err) fail(path, std::string("read error: ") + std::strerror(errnum));
  return buf;
}

// Checks the envelope (magic, version, length, checksum) and parses the body.
FileRec parse_file(const std::vector<unsigned char>& buf, const std::string& path) {
  const size_t size = buf.size();
  if (size == 0) fail(path, "empty file, not a deftnn model");
  if (std::memcmp(buf.data(), kMagic, std::min(size, sizeof kMagic)) != 0)
    fail(path, "not a deftnn model file (bad magic)");
  if (size < sizeof kMagic) fail(path, "truncated: the file ends inside the magic (" + std::to_string(size) + " bytes)");
  Reader head(buf, sizeof kMagic, size, true, path);
  uint32_t version = head.u32("format version");
  if (version != kModelFormatVersion)
    fail(path, "unsupported model format version " + std::to_string(version) + " (this build reads version " +
                   std::to_string(kModelFormatVersion) +
                   (version > kModelFormatVersion ? "; the file was written by a newer deftnn)" : ")"));
  uint64_t total = head.u64("total length");
  if (total < kMinFileBytes)
    fail(path, "corrupt header: total length " + std::to_string(total) + " is below the minimum " +
                   std::to_string(kMinFileBytes));
  if (size > total)
    fail(path, "the file is " + std::to_string(size) + " bytes but its header says " + std::to_string(total) +
                   " (trailing data, or a corrupt length field)");
  if (size < total) {
    // Truncated: parse what is there to name the field where it ends.
    Reader r(buf, kHeaderBytes, size, true, path);
    parse_body(r);
    if (r.remaining() >= kTrailerBytes)
      fail(path, "corrupt header: it says the file is " + std::to_string(total) + " bytes, but the file is " +
                     std::to_string(size) + " bytes and its content ends at byte " + std::to_string(r.pos()));
    fail(path, "truncated: the file is " + std::to_string(size) + " bytes but its header says " +
                   std::to_string(total) + "; it ends inside the trailer (length and checksum)");
  }
  Reader tail(buf, size - kTrailerBytes, size, false, path);
  uint64_t total2 = tail.u64("trailer length");
  uint32_t stored_crc = tail.u32("checksum");
  uint32_t crc = crc_of(0, buf.data(), size - 4);
  if (crc != stored_crc) {
    char msg[128];
    std::snprintf(msg, sizeof msg, "checksum mismatch (stored %08x, computed %08x): the file is corrupt",
                  stored_crc, crc);
    fail(path, msg);
  }
  if (total2 != total)
    fail(path, "corrupt trailer: length " + std::to_string(total2) + " differs from the header's " +
                   std::to_string(total));
  Reader r(buf, kHeaderBytes, size - kTrailerBytes, false, path);
  FileRec rec = parse_body(r);
  if (r.remaining() != 0)
    fail(path, "corrupt: " + std::to_string(r.remaining()) + " unexplained bytes before the trailer");
  return rec;
}

Model build_model(const FileRec& rec, const std::vector<unsigned char>& buf, const std::string& path) {
  Model m;
  try {
    m = Model(rec.input);
  } catch (const Error& e) {
    fail(path, std::string("input shape: ") + e.what());
  }
  std::set<std::string> names;
  for (size_t i = 0; i < rec.nodes.size(); ++i) {
    const NodeRec& n = rec.nodes[i];
    const std::string where = "node " + std::to_string(i) + " '" + n.name + "'";
    if (n.name.empty()) fail(path, "node " + std::to_string(i) + " has an empty name");
    if (!names.insert(n.name).second) fail(path, where + ": duplicate node name");
    if (n.inputs.empty()) fail(path, where + ": has no inputs");
    for (int id : n.inputs)
      if (id < 0 || id > static_cast<int>(i))
        fail(path, where + ": input value id " + std::to_string(id) + " is out of range [0, " +
                       std::to_string(i) + "]");
    std::unique_ptr<Layer> layer;
    try {
      layer = make_layer(n.type, n.attrs);
      m.add(n.name, std::move(layer), n.inputs);
    } catch (const Error& e) {
      fail(path, where + ": " + e.what());
    } catch (const std::bad_alloc&) {
      fail(path, where + ": the '" + n.type + "' layer's attributes (" + n.attrs.str(10) +
                     ") need more memory than is available");
    }
    std::vector<Param>& ps = m.nodes().back().layer->params();
    auto names_of = [](const auto& v) {
      std::string s;
      for (const auto& p : v) s += (s.empty() ? "" : ", ") + p.name;
      return "[" + s + "]";
    };
    if (ps.size() != n.params.size())
      fail(path, where + ": the file stores " + std::to_string(n.params.size()) + " params " +
                     names_of(n.params) + " but a '" + n.type + "' layer with these attributes has " +
                     std::to_string(ps.size()) + " " + names_of(ps));
    for (size_t j = 0; j < ps.size(); ++j) {
      const ParamRec& pr = n.params[j];
      Param& p = ps[j];
      if (p.name != pr.name)
        fail(path, where + ": param " + std::to_string(j) + " is '" + pr.name + "' in the file but '" +
                       p.name + "' in a '" + n.type + "' layer");
      if (p.value.shape() != pr.shape)
        fail(path, where + ": param '" + pr.name + "' has shape " + shape_str(pr.shape) +
                       " in the file but shape inference gives " + shape_str(p.value.shape()));
      float* dst = p.value.data();
      const unsigned char* src = buf.data() + pr.data_offset;
      const int64_t numel = p.value.numel();
      if constexpr (std::endian::native == std::endian::little) {
        if (numel) std::memcpy(dst, src, static_cast<size_t>(numel) * sizeof(float));
      } else {
        for (int64_t k = 0; k < numel; ++k) {
          uint32_t v;
          std::memcpy(&v, src + 4 * k, 4);
          dst[k] = std::bit_cast<float>(to_le(v));
        }
      }
      p.trainable = pr.trainable;
      p.lr_mult = pr.lr_mult;
      p.decay_mult = pr.decay_mult;
      if (p.trainable && p.grad.shape() != p.value.shape()) p.grad = Tensor(p.value.shape());
      if (!p.trainable) p.grad = Tensor();
    }
  }
  return m;
}

void remove_quietly(const std::string& p) {
  std::error_code ec;
  std::filesystem::remove(p, ec);
}

}  // namespace

void save_model(const Model& m, const std::string& path, const ModelMetadata& meta) {
  check_saveable(m, meta, path);
  CountSink counter;
  Emitter<CountSink> ce(counter);
  emit_model(ce, m, meta, 0);
  const uint64_t total = counter.size + kTrailerBytes;

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    fail(path, std::string("cannot write model file (creating ") + tmp + "): " + std::strerror(errno));
  try {
    FileSink sink(f, path);
    Emitter<FileSink> e(sink);
    emit_model(e, m, meta, total);
    e.u64(total);
    uint32_t crc = sink.crc();
    e.u32(crc);
    if (sink.size() != total) fail(path, "internal error: wrote " + std::to_string(sink.size()) +
                                             " bytes, expected " + std::to_string(total));
    if (std::fflush(f) != 0) fail(path, std::string("write failed: ") + std::strerror(errno));
    if (::fsync(::fileno(f)) != 0) fail(path, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    remove_quietly(tmp);
    throw;
  }
  if (std::fclose(f) != 0) {
    int errnum = errno;
    remove_quietly(tmp);
    fail(path, std::string("write failed: ") + std::strerror(errnum));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int errnum = errno;
    remove_quietly(tmp);
    fail(path, std::string("cannot replace the model file (rename from ") + tmp + "): " + std::strerror(errnum));
  }
  // Make the rename itself durable (best effort: some filesystems refuse fsync on directories).
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

Model load_model(const std::string& path, ModelMetadata* meta) {
  if (is_onnx_path(path)) {  // ONNX models are accepted wherever a model file is (src/io/onnx_import.cpp)
    if (meta) meta->clear();
    return import_onnx(path);
  }
  std::vector<unsigned char> buf = read_file(path);
  FileRec rec = parse_file(buf, path);
  Model m = build_model(rec, buf, path);
  if (meta) *meta = std::move(rec.meta);
  return m;
}

ModelMetadata load_model_metadata(const std::string& path) {
  std::vector<unsigned char> buf = read_file(path);
  return parse_file(buf, path).meta;
}

}  // namespace deftnn
