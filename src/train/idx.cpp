// IDX data files (MNIST, Fashion-MNIST): gzip or plain, validated against their headers.
//
// An IDX file is a 4-byte big-endian magic 0x0000TTDD (TT = element type, 0x08 for unsigned
// bytes; DD = number of dimensions), DD big-endian u32 dimensions, then the elements. Nothing in
// the header is trusted: the payload is read in bounded chunks, so a header that claims more
// data than the file holds fails as "truncated" after reading only what is there, never by
// allocating what the header claims.
#include "deftnn/data.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "deftnn/error.h"
#include "deftnn/rng.h"
#include "deftnn/train.h"

namespace deftnn {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr int64_t kMaxSamples = int64_t{1} << 31;     // a u32 count can't exceed this anyway
constexpr int64_t kMaxImageSide = 1 << 14;             // 16384 pixels per side
constexpr size_t kChunk = size_t{8} << 20;             // read payloads 8 MiB at a time

const char* kHowToGet =
    "install the Debian package dataset-fashion-mnist (sudo apt-get install "
    "dataset-fashion-mnist) or set DEFTNN_DATA to a directory holding the IDX files";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// An open gzip-or-plain file (gzread passes uncompressed files through unchanged).
class IdxReader {
 public:
  explicit IdxReader(const std::string& path) : path_(path) {
    std::error_code ec;
    auto st = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(st))
      fail(path, std::string("no such file; to get Fashion-MNIST, ") + kHowToGet);
    if (std::filesystem::is_directory(st)) fail(path, "is a directory, not an IDX file");
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) fail(path, std::string("cannot open: ") + std::strerror(errno));
    gzbuffer(f_, 1 << 17);
  }
  ~IdxReader() {
    if (f_) gzclose(f_);
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (got < n) {
      unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
      int r = gzread(f_, p + got, want);
      if (r < 0) {
        int errnum = 0;
        const char* msg = gzerror(f_, &errnum);
        fail(path_, std::string("read error (corrupt gzip data?): ") + (msg ? msg : "unknown"));
      }
      if (r == 0) {
        // zlib reports a compressed stream cut short only through gzerror, after the data it
        // could still decode (which may even be all of the payload).
        int errnum = Z_OK;
        gzerror(f_, &errnum);
        if (errnum == Z_BUF_ERROR)
          fail(path_, "truncated: the gzip stream ends early (after " + std::to_string(offset_) +
                          " uncompressed bytes)");
        break;
      }
      got += static_cast<size_t>(r);
      offset_ += r;
    }
    return got;
  }

  uint32_t read_u32_be(const char* field) {
    unsigned char b[4];
    size_t got = read(b, 4);
    if (got != 4)
      fail(path_, "truncated: the file ends inside the header (" + std::string(field) +
                      ", at byte " + std::to_string(offset_) + ")");
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  // Reads exactly n bytes in bounded chunks; `what` describes the payload for the error.
  std::vector<unsigned char> read_payload(int64_t n, const std::string& what) {
    std::vector<unsigned char> buf;
    size_t have = 0;
    const size_t want = static_cast<size_t>(n);
    while (have < want) {
      size_t chunk = std::min(want - have, kChunk);
      buf.resize(have + chunk);
      size_t got = read(buf.data() + have, chunk);
      have += got;
      if (got < chunk)
        fail(path_, "truncated: the header promises " + what + " (" + std::to_string(want) +
                        " bytes after the header) but the file holds only " +
                        std::to_string(have));
    }
    return buf;
  }

  // True when the data continues past what has been read.
  bool has_more() {
    unsigned char b;
    return read(&b, 1) == 1;
  }

  int64_t offset() const { return offset_; }

 private:
  std::string path_;
  gzFile f_ = nullptr;
  int64_t offset_ = 0;   // in the uncompressed data
};

void check_magic(const std::string& path, uint32_t magic, uint32_t expected) {
  if (magic == expected) return;
  std::string what = "not an IDX " + std::string(expected == kImagesMagic ? "image" : "label") +
                     " file: magic " + hex32(magic) + ", expected " + hex32(expected);
  if (magic == kImagesMagic) what += " (this is an image file)";
  if (magic == kLabelsMagic) what += " (this is a label file)";
  if ((magic >> 16) == 0 && ((magic >> 8) & 0xff) != 0x08)
    what += " (element type " + hex32((magic >> 8) & 0xff) + " is not unsigned byte)";
  fail(path, what);
}

struct ImageHeader {
  int64_t n, h, w;
};

ImageHeader read_image_header(IdxReader& r, const std::string& path) {
  check_magic(path, r.read_u32_be("magic"), kImagesMagic);
  ImageHeader hd{};
  hd.n = r.read_u32_be("image count");
  hd.h = r.read_u32_be("row count");
  hd.w = r.read_u32_be("column count");
  if (hd.n > kMaxSamples) fail(path, "absurd image count " + std::to_string(hd.n));
  if (hd.h < 1 || hd.w < 1 || hd.h > kMaxImageSide || hd.w > kMaxImageSide)
    fail(path, "absurd image size " + std::to_string(hd.h) + "x" + std::to_string(hd.w) +
                   " (each side must be in [1, " + std::to_string(kMaxImageSide) + "])");
  return hd;
}

int64_t read_label_header(IdxReader& r, const std::string& path) {
  check_magic(path, r.read_u32_be("magic"), kLabelsMagic);
  int64_t n = r.read_u32_be("label count");
  if (n > kMaxSamples) fail(path, "absurd label count " + std::to_string(n));
  return n;
}

std::string base_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path, int64_t limit,
                 int num_classes) {
  check(num_classes >= 1 && num_classes <= 256,
        "load_idx: num_classes must be in [1, 256], got " + std::to_string(num_classes));
  IdxReader ir(images_path);
  IdxReader lr(labels_path);
  ImageHeader hd = read_image_header(ir, images_path);
  int64_t nlabels = read_label_header(lr, labels_path);
  if (nlabels != hd.n)
    throw Error(images_path + " holds " + std::to_string(hd.n) + " images but " + labels_path +
                " holds " + std::to_string(nlabels) + " labels; the counts must match");

  const int64_t n = limit >= 0 ? std::min(limit, hd.n) : hd.n;
  const int64_t pixels = hd.h * hd.w;
  std::vector<unsigned char> px =
      ir.read_payload(n * pixels, std::to_string(n) + " images of " + std::to_string(hd.h) + "x" +
                                      std::to_string(hd.w));
  std::vector<unsigned char> lb = lr.read_payload(n, std::to_string(n) + " labels");
  if (n == hd.n) {
    if (ir.has_more())
      fail(images_path, "the file is longer than its header says (" + std::to_string(hd.n) +
                            " images of " + std::to_string(hd.h) + "x" + std::to_string(hd.w) +
                            "): extra data after byte " + std::to_string(ir.offset() - 1));
    if (lr.has_more())
      fail(labels_path, "the file is longer than its header says (" + std::to_string(n) +
                            " labels): extra data after byte " + std::to_string(lr.offset() - 1));
  }

  Dataset d;
  d.num_classes = num_classes;
  d.name = base_name(images_path);
  d.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (lb[i] >= num_classes)
      fail(labels_path, "label " + std::to_string(lb[i]) + " of sample " + std::to_string(i) +
                            " is out of range [0, " + std::to_string(num_classes) + ")");
    d.labels[i] = lb[i];
  }
  d.images = Tensor({n, 1, hd.h, hd.w});
  float* out = d.images.data();
  const float scale = 1.0f / 255.0f;
  const int64_t total = n * pixels;
  for (int64_t i = 0; i < total; ++i) out[i] = static_cast<float>(px[i]) * scale;
  return d;
}

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("DEFTNN_DATA");
  if (env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

Dataset load_fashion_mnist(const std::string& dir_in, bool train, int64_t limit) {
  const std::string dir = dir_in.empty() ? default_fashion_mnist_dir() : dir_in;
  const std::string prefix = train ? "train" : "t10k";
  auto pick = [&](const std::string& stem) {
    std::filesystem::path gz = std::filesystem::path(dir) / (stem + ".gz");
    std::filesystem::path plain = std::filesystem::path(dir) / stem;
    std::error_code ec;
    if (!std::filesystem::exists(gz, ec) && std::filesystem::exists(plain, ec))
      return plain.string();
    return gz.string();   // when neither exists, the error names the canonical .gz name
  };
  Dataset d = load_idx(pick(prefix + "-images-idx3-ubyte"), pick(prefix + "-labels-idx1-ubyte"),
                       limit, 10);
  d.name = "fashion-mnist/" + prefix;
  return d;
}

Dataset pad_images(const Dataset& d, int pad) {
  check(pad >= 0, "pad_images: negative padding " + std::to_string(pad));
  check(d.images.ndim() == 4,
        "pad_images: images must be [N, C, H, W], got " + shape_str(d.images.shape()));
  const int64_t n = d.images.dim(0), c = d.images.dim(1), h = d.images.dim(2), w = d.images.dim(3);
  const int64_t oh = h + 2 * pad, ow = w + 2 * pad;
  Dataset out;
  out.labels = d.labels;
  out.num_classes = d.num_classes;
  out.name = d.name;
  out.images = Tensor({n, c, oh, ow});   // zero-filled
  const float* src = d.images.data();
  float* dst = out.images.data();
  for (int64_t p = 0; p < n * c; ++p) {
    const float* s = src + p * h * w;
    float* t = dst + p * oh * ow + pad * ow + pad;
    for (int64_t y = 0; y < h; ++y) std::memcpy(t + y * ow, s + y * w, sizeof(float) * w);
  }
  return out;
}

void normalize(Dataset& d, float mean, float stddev) {
  check(stddev > 0, "normalize: stddev must be > 0, got " + std::to_string(stddev));
  const float inv = 1.0f / stddev;
  float* x = d.images.data();
  const int64_t total = d.images.numel();
  for (int64_t i = 0; i < total; ++i) x[i] = (x[i] - mean) * inv;
}

Dataset subset(const Dataset& d, const std::vector<int64_t>& indices, const std::string& name) {
  check(d.images.ndim() >= 1 && d.images.dim(0) == d.size(),
        "subset: " + d.name + " has " + std::to_string(d.size()) + " labels but images " +
            shape_str(d.images.shape()));
  for (int64_t i : indices)
    check(i >= 0 && i < d.size(), "subset: index " + std::to_string(i) + " outside " + d.name +
                                      " (" + std::to_string(d.size()) + " samples)");
  Dataset out;
  out.num_classes = d.num_classes;
  out.name = name.empty() ? d.name : name;
  if (indices.empty()) {
    Shape s = d.images.shape();
    s[0] = 0;
    out.images = Tensor(s);
    return out;
  }
  gather_batch(d, indices, 0, static_cast<int64_t>(indices.size()), out.images, out.labels);
  return out;
}

ValidationSplit make_validation_split(int64_t total, int64_t validation_size, uint64_t seed) {
  check(total >= 2, "validation split: the training set has " + std::to_string(total) +
                        " sample(s); at least 2 are needed to hold any out");
  check(validation_size >= 1 && validation_size <= total / 2,
        "validation split: cannot hold out " + std::to_string(validation_size) + " of " +
            std::to_string(total) + " training samples; expected 1 to " +
            std::to_string(total / 2) + " (at most half of them)");
  ValidationSplit s;
  s.total = total;
  s.seed = seed;
  std::vector<int64_t> perm(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) perm[i] = i;
  Rng rng(seed);
  for (int64_t i = 0; i < validation_size; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(total - i)));
    std::swap(perm[i], perm[j]);
  }
  s.validation_indices.assign(perm.begin(), perm.begin() + validation_size);
  std::sort(s.validation_indices.begin(), s.validation_indices.end());
  s.train_indices.reserve(static_cast<size_t>(total - validation_size));
  size_t v = 0;
  for (int64_t i = 0; i < total; ++i) {
    if (v < s.validation_indices.size() && s.validation_indices[v] == i) {
      ++v;
      continue;
    }
    s.train_indices.push_back(i);
  }
  return s;
}

TrainValidation apply_validation_split(const Dataset& full, const ValidationSplit& split) {
  check(full.size() == split.total,
        "validation split: it was made for " + std::to_string(split.total) + " samples but " +
            full.name + " has " + std::to_string(full.size()));
  check(static_cast<int64_t>(split.train_indices.size() + split.validation_indices.size()) ==
            split.total,
        "validation split: its index lists do not cover the " + std::to_string(split.total) +
            " samples");
  const std::string tag = std::to_string(split.validation_indices.size()) + " (seed " +
                          std::to_string(split.seed) + ")";
  TrainValidation r;
  r.train = subset(full, split.train_indices, full.name + " minus " + tag + " held out");
  r.validation = subset(full, split.validation_indices, full.name + " held out " + tag);
  return r;
}

std::string HeldOut::describe() const {
  if (empty()) return "none";
  return std::to_string(held_out) + " of the first " + std::to_string(total) +
         " training images (seed " + std::to_string(seed) + ")";
}

void write_held_out(std::map<std::string, std::string>& meta, const HeldOut& h) {
  if (h.empty()) return;
  meta["validation_held_out"] = std::to_string(h.held_out);
  meta["validation_held_out_of"] = std::to_string(h.total);
  meta["validation_split_seed"] = std::to_string(h.seed);
}

HeldOut read_held_out(const std::map<std::string, std::string>& meta) {
  HeldOut h;
  auto it = meta.find("validation_held_out");
  if (it == meta.end()) return h;
  auto num = [&](const char* key) -> unsigned long long {
    auto f = meta.find(key);
    check(f != meta.end(), std::string("model metadata: validation_held_out without ") + key);
    const std::string& v = f->second;
    check(!v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() <= 20,
          std::string("model metadata: ") + key + " '" + v + "' is not a non-negative integer");
    try {
      return std::stoull(v);
    } catch (const std::exception&) {
      throw Error(std::string("model metadata: ") + key + " '" + v + "' is out of range");
    }
  };
  h.held_out = static_cast<int64_t>(num("validation_held_out"));
  h.total = static_cast<int64_t>(num("validation_held_out_of"));
  h.seed = num("validation_split_seed");
  check(h.held_out >= 1 && h.held_out <= h.total / 2,
        "model metadata: holds out " + std::to_string(h.held_out) + " of " + std::to_string(h.total) +
            " training images, which no split can");
  return h;
}

}  // namespace deftnn
