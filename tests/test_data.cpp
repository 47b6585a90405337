// IDX data loading: round trips through small gzip and plain files, every way a file can be
// wrong (each must throw deftnn::Error naming the file), and the real Fashion-MNIST test set when
// the Debian package is installed.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "deftnn/data.h"
#include "deftnn/error.h"

namespace fs = std::filesystem;
using namespace deftnn;

namespace {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("deftnn_data_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void put_u32(std::vector<unsigned char>& b, uint32_t v) {
  b.push_back(static_cast<unsigned char>(v >> 24));
  b.push_back(static_cast<unsigned char>(v >> 16));
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}

std::vector<unsigned char> idx_images(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 0x803) {
  std::vector<unsigned char> b;
  put_u32(b, magic);
  put_u32(b, n);
  put_u32(b, h);
  put_u32(b, w);
  for (uint32_t i = 0; i < n * h * w; ++i) b.push_back(static_cast<unsigned char>((i * 37 + 11) % 256));
  return b;
}

std::vector<unsigned char> idx_labels(uint32_t n, int classes = 10, uint32_t magic = 0x801) {
  std::vector<unsigned char> b;
  put_u32(b, magic);
  put_u32(b, n);
  for (uint32_t i = 0; i < n; ++i) b.push_back(static_cast<unsigned char>(i % classes));
  return b;
}

void write_plain(const std::string& path, const std::vector<unsigned char>& b) {
  std::error_code ec;
  fs::remove(path, ec);   // a fresh file: truncating one that holds data is slow on ext4
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const std::string& path, const std::vector<unsigned char>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Runs fn, expects a deftnn::Error whose message contains every one of `needles`.
template <class F>
void expect_error(F&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown; expected one mentioning " << needles.front();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
  }
}

void check_content(const Dataset& d, int64_t n, int64_t h, int64_t w) {
  ASSERT_EQ(d.images.shape(), (Shape{n, 1, h, w}));
  ASSERT_EQ(d.size(), n);
  EXPECT_EQ(d.num_classes, 10);
  for (int64_t i = 0; i < n * h * w; ++i)
    ASSERT_FLOAT_EQ(d.images[i], static_cast<float>((i * 37 + 11) % 256) / 255.0f) << i;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(d.labels[i], i % 10);
}

}  // namespace

TEST(DataIdx, ReadsPlainAndGzip) {
  TempDir t;
  write_plain(t.file("img"), idx_images(13, 5, 7));
  write_plain(t.file("lab"), idx_labels(13));
  write_gz(t.file("img.gz"), idx_images(13, 5, 7));
  write_gz(t.file("lab.gz"), idx_labels(13));
  check_content(load_idx(t.file("img"), t.file("lab")), 13, 5, 7);
  check_content(load_idx(t.file("img.gz"), t.file("lab.gz")), 13, 5, 7);
  // Compression is detected from the content, so mixing works too.
  check_content(load_idx(t.file("img.gz"), t.file("lab")), 13, 5, 7);
  Dataset d = load_idx(t.file("img"), t.file("lab"));
  for (int64_t i = 0; i < d.images.numel(); ++i) {
    EXPECT_GE(d.images[i], 0.0f);
    EXPECT_LE(d.images[i], 1.0f);
  }
}

TEST(DataIdx, LimitKeepsFirstSamples) {
  TempDir t;
  write_gz(t.file("img.gz"), idx_images(20, 4, 4));
  write_gz(t.file("lab.gz"), idx_labels(20));
  check_content(load_idx(t.file("img.gz"), t.file("lab.gz"), 6), 6, 4, 4);
  check_content(load_idx(t.file("img.gz"), t.file("lab.gz"), 0), 0, 4, 4);
  check_content(load_idx(t.file("img.gz"), t.file("lab.gz"), 1000), 20, 4, 4);
}

TEST(DataIdx, MissingFileNamesPathAndPackage) {
  TempDir t;
  write_plain(t.file("lab"), idx_labels(3));
  expect_error([&] { load_idx(t.file("nope-images"), t.file("lab")); },
               {t.file("nope-images"), "dataset-fashion-mnist", "apt-get install", "DEFTNN_DATA"});
  write_plain(t.file("img"), idx_images(3, 2, 2));
  expect_error([&] { load_idx(t.file("img"), t.file("nope-labels")); },
               {t.file("nope-labels"), "dataset-fashion-mnist"});
  expect_error([&] { load_fashion_mnist(t.path().string(), false); },
               {"t10k-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
  expect_error([&] { load_idx(t.path().string(), t.file("lab")); }, {t.path().string(), "directory"});
}

TEST(DataIdx, WrongMagicNamesFile) {
  TempDir t;
  write_plain(t.file("img"), idx_images(3, 2, 2));
  write_plain(t.file("lab"), idx_labels(3));
  // Swapped: an image file where labels are expected and vice versa.
  expect_error([&] { load_idx(t.file("lab"), t.file("img")); }, {t.file("lab"), "magic", "label file"});
  write_plain(t.file("bad"), idx_images(3, 2, 2, 0x12345678));
  expect_error([&] { load_idx(t.file("bad"), t.file("lab")); }, {t.file("bad"), "magic"});
  write_gz(t.file("badl.gz"), idx_labels(3, 10, 0x00000d01));
  expect_error([&] { load_idx(t.file("img"), t.file("badl.gz")); }, {t.file("badl.gz"), "magic"});
  write_plain(t.file("empty"), {});
  expect_error([&] { load_idx(t.file("empty"), t.file("lab")); }, {t.file("empty"), "truncated"});
}

TEST(DataIdx, TruncatedAtEveryOffsetNamesFile) {
  TempDir t;
  const auto img = idx_images(4, 3, 3);
  const auto lab = idx_labels(4);
  write_plain(t.file("img"), img);
  write_plain(t.file("lab"), lab);
  for (size_t len = 0; len < img.size(); ++len) {
    std::vector<unsigned char> cut(img.begin(), img.begin() + static_cast<long>(len));
    write_plain(t.file("cut"), cut);
    write_gz(t.file("cut.gz"), cut);
    expect_error([&] { load_idx(t.file("cut"), t.file("lab")); }, {t.file("cut"), "truncated"});
    expect_error([&] { load_idx(t.file("cut.gz"), t.file("lab")); }, {t.file("cut.gz"), "truncated"});
  }
  for (size_t len = 0; len < lab.size(); ++len) {
    std::vector<unsigned char> cut(lab.begin(), lab.begin() + static_cast<long>(len));
    write_gz(t.file("cutl.gz"), cut);
    expect_error([&] { load_idx(t.file("img"), t.file("cutl.gz")); }, {t.file("cutl.gz"), "truncated"});
  }
  // A gzip stream cut short (the compressed bytes themselves truncated).
  write_gz(t.file("full.gz"), idx_images(50, 8, 8));
  write_gz(t.file("lab50.gz"), idx_labels(50));
  std::ifstream in(t.file("full.gz"), std::ios::binary);
  std::vector<char> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t len : {size_t{10}, gz.size() / 2, gz.size() - 9}) {
    std::ofstream(t.file("half.gz"), std::ios::binary).write(gz.data(), static_cast<std::streamsize>(len));
    expect_error([&] { load_idx(t.file("half.gz"), t.file("lab50.gz")); }, {t.file("half.gz"), "truncated"});
  }
}

TEST(DataIdx, TrailingDataRejected) {
  TempDir t;
  auto img = idx_images(4, 3, 3);
  img.push_back(0);
  write_plain(t.file("img"), img);
  write_plain(t.file("lab"), idx_labels(4));
  expect_error([&] { load_idx(t.file("img"), t.file("lab")); }, {t.file("img"), "longer"});
}

TEST(DataIdx, LyingHeaderDoesNotAllocate) {
  TempDir t;
  // 4 billion images of 16384x16384 claimed, 36 bytes present: must fail fast as absurd or
  // truncated, never try to allocate the claimed size.
  auto img = idx_images(4, 3, 3);
  img[4] = img[5] = img[6] = img[7] = 0xff;
  write_plain(t.file("huge_n"), img);
  auto lab = idx_labels(4);
  lab[4] = lab[5] = lab[6] = lab[7] = 0xff;
  write_plain(t.file("huge_l"), lab);
  expect_error([&] { load_idx(t.file("huge_n"), t.file("huge_l")); }, {t.file("huge_n")});
  auto big = idx_images(4, 3, 3);
  big[8] = 0x40;   // rows = 0x40000003
  write_plain(t.file("huge_h"), big);
  write_plain(t.file("lab"), idx_labels(4));
  expect_error([&] { load_idx(t.file("huge_h"), t.file("lab")); }, {t.file("huge_h"), "image size"});
  auto many = idx_images(4, 3, 3);
  many[5] = 0x10;   // n = 0x00100004 images of 3x3, only 4 present
  write_plain(t.file("many"), many);
  auto manyl = idx_labels(4);
  manyl[5] = 0x10;
  write_plain(t.file("manyl"), manyl);
  expect_error([&] { load_idx(t.file("many"), t.file("manyl")); }, {t.file("many"), "truncated"});
  auto zero = idx_images(0, 3, 3);
  zero[11] = 0;   // 3x0 images
  write_plain(t.file("zero"), zero);
  write_plain(t.file("lab0"), idx_labels(0));
  expect_error([&] { load_idx(t.file("zero"), t.file("lab0")); }, {t.file("zero"), "image size"});
}

TEST(DataIdx, MismatchedCountsNameBothFiles) {
  TempDir t;
  write_plain(t.file("img"), idx_images(5, 2, 2));
  write_plain(t.file("lab"), idx_labels(6));
  expect_error([&] { load_idx(t.file("img"), t.file("lab")); }, {t.file("img"), t.file("lab"), "5", "6"});
}

TEST(DataIdx, LabelOutOfRangeNamesFile) {
  TempDir t;
  write_plain(t.file("img"), idx_images(5, 2, 2));
  auto lab = idx_labels(5);
  lab.back() = 10;
  write_gz(t.file("lab.gz"), lab);
  expect_error([&] { load_idx(t.file("img"), t.file("lab.gz")); }, {t.file("lab.gz"), "label 10", "sample 4"});
  // The same labels are fine with more classes.
  EXPECT_EQ(load_idx(t.file("img"), t.file("lab.gz"), -1, 11).labels.back(), 10);
}

TEST(DataIdx, FashionMnistDirLayoutAndEnv) {
  TempDir t;
  write_gz(t.file("t10k-images-idx3-ubyte.gz"), idx_images(10, 28, 28));
  write_gz(t.file("t10k-labels-idx1-ubyte.gz"), idx_labels(10));
  write_plain(t.file("train-images-idx3-ubyte"), idx_images(20, 28, 28));   // uncompressed
  write_plain(t.file("train-labels-idx1-ubyte"), idx_labels(20));
  Dataset te = load_fashion_mnist(t.path().string(), false);
  EXPECT_EQ(te.size(), 10);
  EXPECT_EQ(te.name, "fashion-mnist/t10k");
  Dataset tr = load_fashion_mnist(t.path().string(), true, 7);
  EXPECT_EQ(tr.size(), 7);
  const char* old = std::getenv("DEFTNN_DATA");
  std::string saved = old ? old : "";
  ::setenv("DEFTNN_DATA", t.path().c_str(), 1);
  EXPECT_EQ(default_fashion_mnist_dir(), t.path().string());
  EXPECT_EQ(load_fashion_mnist("", false).size(), 10);
  if (old) ::setenv("DEFTNN_DATA", saved.c_str(), 1); else ::unsetenv("DEFTNN_DATA");
  if (!old) {
    EXPECT_EQ(default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  }
}

TEST(DataTransform, PadAndNormalize) {
  Dataset d;
  d.images = Tensor::from({2, 1, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  d.labels = {3, 4};
  d.num_classes = 10;
  Dataset p = pad_images(d, 2);
  ASSERT_EQ(p.images.shape(), (Shape{2, 1, 6, 7}));
  EXPECT_EQ(p.labels, d.labels);
  float sum = 0;
  for (int64_t i = 0; i < p.images.numel(); ++i) sum += p.images[i];
  EXPECT_FLOAT_EQ(sum, 78.0f);
  EXPECT_FLOAT_EQ(p.images[2 * 7 + 2], 1.0f);
  EXPECT_FLOAT_EQ(p.images[3 * 7 + 4], 6.0f);
  EXPECT_FLOAT_EQ(p.images[42 + 2 * 7 + 2], 7.0f);
  EXPECT_FLOAT_EQ(p.images[0], 0.0f);
  EXPECT_EQ(pad_images(d, 0).images.shape(), d.images.shape());
  EXPECT_THROW(pad_images(d, -1), Error);
  normalize(p, 0.5f, 2.0f);
  EXPECT_FLOAT_EQ(p.images[0], -0.25f);
  EXPECT_FLOAT_EQ(p.images[2 * 7 + 2], 0.25f);
  EXPECT_THROW(normalize(p, 0.0f, 0.0f), Error);
}

TEST(DataFashionMnist, RealTestSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << dir << " not present (sudo apt-get install dataset-fashion-mnist)";
  Dataset d = load_fashion_mnist(dir, false);
  ASSERT_EQ(d.images.shape(), (Shape{10000, 1, 28, 28}));
  ASSERT_EQ(d.size(), 10000);
  EXPECT_EQ(d.num_classes, 10);
  std::vector<int> counts(10, 0);
  for (int32_t l : d.labels) {
    ASSERT_GE(l, 0);
    ASSERT_LT(l, 10);
    ++counts[l];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], 1000) << "class " << c;
  float lo = 1, hi = 0;
  double mean = 0;
  for (int64_t i = 0; i < d.images.numel(); ++i) {
    lo = std::min(lo, d.images[i]);
    hi = std::max(hi, d.images[i]);
    mean += d.images[i];
  }
  mean /= static_cast<double>(d.images.numel());
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
  EXPECT_NEAR(mean, 0.286, 0.01);   // the published Fashion-MNIST pixel mean
}

// Validation split held out of the training set (make_validation_split / apply_validation_split).
namespace {
Dataset numbered(int64_t n) {
  Dataset d;
  d.name = "numbered";
  d.num_classes = 10;
  d.images = Tensor({n, 1, 2, 2});
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) d.images.data()[i * 4 + k] = static_cast<float>(i);
    d.labels.push_back(static_cast<int32_t>(i % 10));
  }
  return d;
}
}  // namespace

TEST(ValidationSplit, DisjointCoveringAscending) {
  for (int64_t total : {2, 3, 10, 1000, 60000}) {
    for (int64_t n : {int64_t{1}, total / 3 > 0 ? total / 3 : int64_t{1}, total / 2}) {
      const ValidationSplit s = make_validation_split(total, n, 7);
      ASSERT_EQ(static_cast<int64_t>(s.validation_indices.size()), n);
      ASSERT_EQ(static_cast<int64_t>(s.train_indices.size()), total - n);
      EXPECT_TRUE(std::is_sorted(s.validation_indices.begin(), s.validation_indices.end()));
      EXPECT_TRUE(std::is_sorted(s.train_indices.begin(), s.train_indices.end()));
      std::vector<int> seen(static_cast<size_t>(total), 0);
      for (int64_t i : s.validation_indices) ++seen.at(static_cast<size_t>(i));
      for (int64_t i : s.train_indices) ++seen.at(static_cast<size_t>(i));
      for (int64_t i = 0; i < total; ++i) ASSERT_EQ(seen[i], 1) << "index " << i << " of " << total;
    }
  }
}

TEST(ValidationSplit, SeededAndDeterministic) {
  const ValidationSplit a = make_validation_split(60000, 5000, 2017);
  const ValidationSplit b = make_validation_split(60000, 5000, 2017);
  EXPECT_EQ(a.validation_indices, b.validation_indices);
  EXPECT_EQ(a.train_indices, b.train_indices);
  const ValidationSplit c = make_validation_split(60000, 5000, 2018);
  EXPECT_NE(a.validation_indices, c.validation_indices);
  // Spread over the whole set, not a block at one end.
  EXPECT_LT(a.validation_indices.front(), 1000);
  EXPECT_GT(a.validation_indices.back(), 59000);
  // Fewer held out with the same seed: a subset (validating on it never sees trained images).
  const ValidationSplit small = make_validation_split(60000, 1200, 2017);
  EXPECT_TRUE(std::includes(a.validation_indices.begin(), a.validation_indices.end(),
                            small.validation_indices.begin(), small.validation_indices.end()));
}

TEST(ValidationSplit, RejectsAbsurdCounts) {
  for (int64_t n : {int64_t{0}, int64_t{-5}, int64_t{30001}, int64_t{60000}, int64_t{1} << 40}) {
    try {
      make_validation_split(60000, n);
      ADD_FAILURE() << "held out " << n << " of 60000";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::to_string(n)), std::string::npos) << msg;
      EXPECT_NE(msg.find("60000"), std::string::npos) << msg;
      EXPECT_NE(msg.find("30000"), std::string::npos) << msg;   // the largest allowed
    }
  }
  EXPECT_THROW(make_validation_split(1, 1), Error);
  EXPECT_NO_THROW(make_validation_split(60000, 30000));
}

TEST(ValidationSplit, AppliesToTheSamples) {
  const Dataset d = numbered(100);
  const ValidationSplit s = make_validation_split(100, 20, 3);
  const TrainValidation tv = apply_validation_split(d, s);
  ASSERT_EQ(tv.train.size(), 80);
  ASSERT_EQ(tv.validation.size(), 20);
  EXPECT_EQ(tv.train.images.dim(0), 80);
  EXPECT_EQ(tv.validation.images.shape(), (Shape{20, 1, 2, 2}));
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t src = s.validation_indices[i];
    EXPECT_EQ(tv.validation.images.data()[i * 4 + 3], static_cast<float>(src));
    EXPECT_EQ(tv.validation.labels[i], d.labels[src]);
  }
  for (int64_t i = 0; i < 80; ++i)
    EXPECT_EQ(tv.train.images.data()[i * 4], static_cast<float>(s.train_indices[i]));
  EXPECT_NE(tv.validation.name.find("held out 20"), std::string::npos) << tv.validation.name;
  EXPECT_THROW(apply_validation_split(numbered(99), s), Error);
  EXPECT_THROW(subset(d, {0, 100}), Error);
}

TEST(ValidationSplit, MetadataRoundTrip) {
  std::map<std::string, std::string> meta;
  EXPECT_TRUE(read_held_out(meta).empty());
  HeldOut h;
  h.held_out = 5000;
  h.total = 60000;
  h.seed = 123;
  write_held_out(meta, h);
  const HeldOut r = read_held_out(meta);
  EXPECT_EQ(r.held_out, 5000);
  EXPECT_EQ(r.total, 60000);
  EXPECT_EQ(r.seed, 123u);
  meta["validation_held_out"] = "40000";
  EXPECT_THROW(read_held_out(meta), Error);
  meta["validation_held_out"] = "12x";
  EXPECT_THROW(read_held_out(meta), Error);
  meta.erase("validation_split_seed");
  meta["validation_held_out"] = "10";
  EXPECT_THROW(read_held_out(meta), Error);
}
