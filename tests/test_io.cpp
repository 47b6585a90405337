// Native model files: bit-exact round trips (structure, attrs, params, flags, metadata, forward
// outputs), and rejection with a deftnn::Error naming the file for every kind of damage:
// truncation at every byte, single-bit flips, forged headers with a valid checksum, inconsistent
// graphs. Atomic saves keep the previous file when a save fails.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "deftnn/error.h"
#include "deftnn/io.h"
#include "deftnn/model.h"
#include "deftnn/zoo.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace deftnn;

namespace {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("deftnn_io_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

using Bytes = std::vector<unsigned char>;

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& b, size_t len) {
  // A fresh file each time: on ext4, truncating a file that holds data forces a flush
  // (auto_da_alloc), which would make the thousands of writes below take minutes.
  std::error_code ec;
  fs::remove(path, ec);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(len));
}
void write_bytes(const std::string& path, const Bytes& b) { write_bytes(path, b, b.size()); }

// Recomputes the trailing CRC32, so that a forged field passes the checksum and must be caught
// by the parser's own bounds and consistency checks.
void restamp(Bytes& b) {
  uint32_t crc = static_cast<uint32_t>(crc32(0, b.data(), static_cast<uInt>(b.size() - 4)));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
}

void put_u32(Bytes& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
void put_i64(Bytes& b, size_t at, int64_t v) { std::memcpy(b.data() + at, &v, 8); }

// Offset of the first length-prefixed string `s` (its u32 length field).
size_t find_str(const Bytes& b, const std::string& s) {
  Bytes pat(4);
  uint32_t n = static_cast<uint32_t>(s.size());
  std::memcpy(pat.data(), &n, 4);
  pat.insert(pat.end(), s.begin(), s.end());
  auto it = std::search(b.begin(), b.end(), pat.begin(), pat.end());
  EXPECT_NE(it, b.end()) << "string '" << s << "' not found in the file";
  return static_cast<size_t>(it - b.begin());
}

// Runs fn, expects a deftnn::Error whose message contains every one of `needles`.
template <class F>
void expect_error(F&& fn, const std::vector<std::string>& needles, const std::string& ctx = "") {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown (" << ctx << "); expected one mentioning " << needles.back();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << ctx << "\nmessage: " << msg << "\nmissing: " << n;
  }
}

// conv -> relu -> {conv 1x1, conv 3x3} -> concat, + a parallel conv -> add -> batchnorm ->
// maxpool -> fc: every attr type (int, float, int list, string) and a two-input DAG.
Model dag_net() {
  Model m({3, 12, 12});
  m.add("conv1", "conv", Attrs().set("out_channels", 4).set("kernel", std::vector<int64_t>{3, 3}).set("pad", 1));
  int r = m.add("relu1", "relu", Attrs().set("negative_slope", 0.125));
  int a = m.add("branch_a", "conv", Attrs().set("out_channels", 3).set("kernel", 1), {r});
  int b = m.add("branch_b", "conv",
                Attrs().set("out_channels", 5).set("kernel", 3).set("pad", 1).set("weight_filler", "gaussian")
                    .set("weight_std", 0.05),
                {r});
  int cat = m.add("cat", "concat", Attrs().set("axis", 1), {a, b});
  int side = m.add("side", "conv", Attrs().set("out_channels", 8).set("kernel", 1).set("bias", 0), {r});
  m.add("sum", "add", Attrs(), {cat, side});
  m.add("bn", "batchnorm", Attrs().set("eps", 1e-5));
  m.add("pool", "maxpool", Attrs().set("kernel", 2).set("stride", 2));
  m.add("fc", "fc", Attrs().set("out_features", 10));
  m.init_params(42);
  // Batchnorm statistics are not learnable; give them non-trivial values.
  Rng rng(7);
  for (Param& p : m.nodes()[m.find("bn")].layer->params())
    for (int64_t i = 0; i < p.value.numel(); ++i)
      p.value[i] = p.name == "var" ? 0.5f + static_cast<float>(rng.uniform()) : static_cast<float>(rng.normal());
  // Flags that are not the layer defaults, to check they are stored.
  Param& w = m.nodes()[m.find("branch_a")].layer->params()[0];
  w.trainable = false;
  w.grad = Tensor();
  m.nodes()[m.find("fc")].layer->params()[0].lr_mult = 0.25f;
  m.nodes()[m.find("fc")].layer->params()[0].decay_mult = 3.0f;
  return m;
}


void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())), 0) << what;
}

void expect_same_model(const Model& a, const Model& b) {
  EXPECT_EQ(a.input_shape(), b.input_shape());
  ASSERT_EQ(a.nodes().size(), b.nodes().size());
  for (size_t i = 0; i < a.nodes().size(); ++i) {
    const Node &x = a.nodes()[i], &y = b.nodes()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.inputs, y.inputs) << x.name;
    EXPECT_EQ(x.layer->type(), y.layer->type()) << x.name;
    EXPECT_EQ(x.layer->attrs().items(), y.layer->attrs().items()) << x.name;
    ASSERT_EQ(x.layer->params().size(), y.layer->params().size()) << x.name;
    for (size_t j = 0; j < x.layer->params().size(); ++j) {
      const Param &p = x.layer->params()[j], &q = y.layer->params()[j];
      const std::string what = x.name + "." + p.name;
      EXPECT_EQ(p.name, q.name) << what;
      EXPECT_EQ(p.trainable, q.trainable) << what;
      EXPECT_EQ(std::bit_cast<uint32_t>(p.lr_mult), std::bit_cast<uint32_t>(q.lr_mult)) << what;
      EXPECT_EQ(std::bit_cast<uint32_t>(p.decay_mult), std::bit_cast<uint32_t>(q.decay_mult)) << what;
      expect_same_bits(p.value, q.value, what);
      if (q.trainable) {
        EXPECT_EQ(q.grad.shape(), q.value.shape()) << what;
      } else {
        EXPECT_TRUE(q.grad.empty()) << what;
      }
    }
  }
}

}  // namespace

TEST(IoModel, RoundTripIsBitExact) {
  TempDir t;
  Model m = dag_net();
  const std::string path = t.file("net.deftnn");
  ModelMetadata meta{{"classes", "t-shirt,trouser,pullover"}, {"epochs", "12"}, {"binary", std::string("a\0b", 3)}};
  save_model(m, path, meta);
  ModelMetadata meta2;
  Model l = load_model(path, &meta2);
  expect_same_model(m, l);
  EXPECT_EQ(meta, meta2);
  EXPECT_EQ(load_model_metadata(path), meta);
  EXPECT_EQ(l.output_shape(2), m.output_shape(2));

  Tensor x = test::random_tensor({2, 3, 12, 12}, 3);
  Tensor y1 = m.forward(x).clone();
  Tensor y2 = l.forward(x).clone();
  expect_same_bits(y1, y2, "forward output");

  // Saving the loaded model gives the same bytes: nothing is lost or reordered.
  save_model(l, t.file("again.deftnn"), meta);
  EXPECT_EQ(read_bytes(path), read_bytes(t.file("again.deftnn")));
}

TEST(IoModel, SpecialFloatValuesSurvive) {
  TempDir t;
  Model m({1, 4, 4});
  m.add("fc", "fc", Attrs().set("out_features", 6).set("weight_std", -0.0).set("bias_value", 1e300));
  float* w = m.nodes()[0].layer->params()[0].value.data();
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.0f,
                            std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()};
  for (size_t i = 0; i < std::size(specials); ++i) w[i] = specials[i];
  save_model(m, t.file("s.deftnn"));
  Model l = load_model(t.file("s.deftnn"));
  expect_same_model(m, l);
}

TEST(IoModel, ZooNetworkRoundTrip) {
  TempDir t;
  Model m = build_zoo("lenet");
  m.init_params(5);
  save_model(m, t.file("lenet.deftnn"), {{"zoo", "lenet"}});
  Model l = load_model(t.file("lenet.deftnn"));
  expect_same_model(m, l);
  Shape in{3};
  in.insert(in.end(), m.input_shape().begin(), m.input_shape().end());
  Tensor x = test::random_tensor(in, 11);
  Tensor y1 = m.forward(x).clone();
  expect_same_bits(y1, l.forward(x), "lenet forward");
}

TEST(IoModel, EmptyModelRoundTrip) {
  TempDir t;
  save_model(Model({2, 3}), t.file("e.deftnn"));
  Model l = load_model(t.file("e.deftnn"));
  EXPECT_EQ(l.input_shape(), (Shape{2, 3}));
  EXPECT_TRUE(l.nodes().empty());
}

TEST(IoModel, TruncatedAtEveryByteNamesFile) {
  TempDir t;
  save_model(dag_net(), t.file("full.deftnn"), {{"k", "v"}});
  const Bytes full = read_bytes(t.file("full.deftnn"));
  const std::string cut = t.file("cut.deftnn");
  ASSERT_GT(full.size(), 1000u);
  int named_field = 0;
  for (size_t len = 0; len < full.size(); ++len) {
    write_bytes(cut, full, len);
    try {
      load_model(cut);
      ADD_FAILURE() << "a file cut to " << len << " bytes loaded";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(cut), std::string::npos) << msg;
      if (len >= 8) {
        EXPECT_NE(msg.find("truncated"), std::string::npos) << len << ": " << msg;
      }
      if (msg.find("ends inside") != std::string::npos) ++named_field;
    }
  }
  EXPECT_GT(named_field, static_cast<int>(full.size()) * 9 / 10);
  // A truncation inside the param data names the node and the param.
  write_bytes(cut, full, full.size() - 30);
  expect_error([&] { load_model(cut); }, {cut, "truncated", "node 9 'fc'", "param 'bias' data"});
}

TEST(IoModel, EverySingleBitFlipIsRejected) {
  TempDir t;
  save_model(dag_net(), t.file("full.deftnn"));
  const Bytes full = read_bytes(t.file("full.deftnn"));
  const std::string bad = t.file("flip.deftnn");
  for (size_t pos = 0; pos < full.size(); ++pos) {
    // Every bit of the header and trailer, one bit per byte elsewhere.
    const bool edge = pos < 64 || pos + 16 > full.size();
    for (int bit = 0; bit < 8; ++bit) {
      if (!edge && bit != static_cast<int>(pos % 8)) continue;
      Bytes b = full;
      b[pos] ^= static_cast<unsigned char>(1u << bit);
      write_bytes(bad, b);
      expect_error([&] { load_model(bad); }, {bad}, "byte " + std::to_string(pos) + " bit " + std::to_string(bit));
    }
  }
  // A flip in the body (past the header) is reported as a checksum mismatch.
  Bytes b = full;
  b[full.size() / 2] ^= 0x10;
  write_bytes(bad, b);
  expect_error([&] { load_model(bad); }, {bad, "checksum mismatch"});
}

TEST(IoModel, NotAModelAndFutureVersion) {
  TempDir t;
  expect_error([&] { load_model(t.file("missing.deftnn")); }, {t.file("missing.deftnn"), "no such"});
  expect_error([&] { load_model(t.path().string()); }, {t.path().string(), "directory"});
  write_bytes(t.file("empty"), {});
  expect_error([&] { load_model(t.file("empty")); }, {t.file("empty"), "empty"});
  const std::string text = "this is a text file, certainly not a model\n";
  write_bytes(t.file("text"), Bytes(text.begin(), text.end()));
  expect_error([&] { load_model(t.file("text")); }, {t.file("text"), "not a deftnn model"});

  save_model(dag_net(), t.file("m.deftnn"));
  Bytes b = read_bytes(t.file("m.deftnn"));
  put_u32(b, 8, kModelFormatVersion + 1);
  restamp(b);
  write_bytes(t.file("future.deftnn"), b);
  expect_error([&] { load_model(t.file("future.deftnn")); }, {t.file("future.deftnn"), "unsupported", "version 2", "newer"});
  put_u32(b, 8, 0);
  restamp(b);
  write_bytes(t.file("v0.deftnn"), b);
  expect_error([&] { load_model(t.file("v0.deftnn")); }, {t.file("v0.deftnn"), "unsupported", "version 0"});

  Bytes extra = read_bytes(t.file("m.deftnn"));
  extra.push_back(0);
  write_bytes(t.file("extra.deftnn"), extra);
  expect_error([&] { load_model(t.file("extra.deftnn")); }, {t.file("extra.deftnn"), "trailing data"});
}

// Forged fields with a valid checksum: the parser's own limits must stop them, before
// allocating anything the file cannot back.
TEST(IoModel, LyingHeaderIsRejectedBeforeAllocating) {
  TempDir t;
  save_model(dag_net(), t.file("m.deftnn"));
  const Bytes good = read_bytes(t.file("m.deftnn"));
  const std::string p = t.file("forged.deftnn");
  // Layout: magic 8, version 4, length 8, input rank 4 (=3) + 3 dims, metadata count, node count.
  const size_t input_rank_at = 20, meta_count_at = 24 + 24, node_count_at = meta_count_at + 4;
  auto forge = [&](auto&& edit, const std::vector<std::string>& needles, const std::string& ctx) {
    Bytes b = good;
    edit(b);
    restamp(b);
    write_bytes(p, b);
    std::vector<std::string> n{p};
    n.insert(n.end(), needles.begin(), needles.end());
    expect_error([&] { load_model(p); }, n, ctx);
  };
  forge([&](Bytes& b) { put_u32(b, node_count_at, 0xffffffffu); }, {"node count", "limit"}, "huge node count");
  forge([&](Bytes& b) { put_u32(b, node_count_at, 1u << 19); }, {"node count", "claims"}, "node count beyond the data");
  forge([&](Bytes& b) { put_u32(b, meta_count_at, 60000); }, {"metadata count", "claims"}, "metadata count");
  forge([&](Bytes& b) { put_u32(b, input_rank_at, 1u << 30); }, {"input shape rank", "limit"}, "input rank");
  forge([&](Bytes& b) { put_i64(b, input_rank_at + 4, int64_t{1} << 62); }, {"input shape", "invalid dimension"}, "input dim");
  forge([&](Bytes& b) { put_i64(b, input_rank_at + 4, -3); }, {"input shape", "invalid dimension"}, "negative dim");
  // The first node's name length.
  forge([&](Bytes& b) { put_u32(b, node_count_at + 4, 0x7fffffffu); }, {"node 0", "name length", "limit"}, "name length");
  // conv1's weight: name, flags, lr, decay, rank, dims.
  const size_t w = find_str(good, "weight");
  const size_t rank_at = w + 4 + 6 + 1 + 4 + 4, dim0_at = rank_at + 4;
  forge([&](Bytes& b) { put_u32(b, rank_at, 1000); }, {"node 0 'conv1'", "param 'weight' shape rank", "limit"}, "param rank");
  forge([&](Bytes& b) { put_i64(b, dim0_at, int64_t{1} << 39); }, {"node 0 'conv1'", "param 'weight' data", "claims"}, "param dim");
  forge([&](Bytes& b) { for (int i = 0; i < 4; ++i) put_i64(b, dim0_at + 8 * i, int64_t{1} << 40); },
        {"too many elements"}, "param numel overflow");
  // conv1's kernel attribute is a list [3, 3]: claim a long one.
  const size_t kernel = find_str(good, "kernel");
  forge([&](Bytes& b) { put_u32(b, kernel + 4 + 6 + 1, 1u << 20); }, {"attribute 'kernel' list length", "claims"}, "list length");
  forge([&](Bytes& b) { b[kernel + 4 + 6] = 9; }, {"attribute 'kernel'", "unknown type tag"}, "attr tag");
}

TEST(IoModel, InconsistentGraphIsRejected) {
  TempDir t;
  save_model(dag_net(), t.file("m.deftnn"));
  const Bytes good = read_bytes(t.file("m.deftnn"));
  const std::string p = t.file("bad.deftnn");
  auto forge = [&](auto&& edit, const std::vector<std::string>& needles, const std::string& ctx) {
    Bytes b = good;
    edit(b);
    restamp(b);
    write_bytes(p, b);
    std::vector<std::string> n{p};
    n.insert(n.end(), needles.begin(), needles.end());
    expect_error([&] { load_model(p); }, n, ctx);
  };
  auto rename = [&](const std::string& from, const std::string& to) {
    return [=](Bytes& b) {
      ASSERT_EQ(from.size(), to.size());
      size_t at = find_str(b, from);
      std::memcpy(b.data() + at + 4, to.data(), to.size());
    };
  };
  forge(rename("relu", "relX"), {"node 1 'relu1'", "unknown layer type 'relX'"}, "unknown type");
  forge(rename("branch_b", "branch_a"), {"node 3 'branch_a'", "duplicate"}, "duplicate name");
  forge(rename("negative_slope", "negative_slopX"), {"relu1", "negative_slopX"}, "unknown attribute");
  forge(rename("mean", "mode"), {"node 7 'bn'", "'mode'", "'mean'"}, "param name");
  // Input ids: cat's inputs are (2, 3); point one past itself.
  forge([&](Bytes& b) {
    size_t at = find_str(b, "axis") + 4 + 4 + 1 + 8;  // key, tag, i64 value
    int32_t ids[3];
    std::memcpy(ids, b.data() + at, 12);
    ASSERT_EQ(ids[0], 2);   // input count
    ids[2] = 99;
    std::memcpy(b.data() + at, ids, 12);
  }, {"node 4 'cat'", "input value id 99", "out of range"}, "input id");
  // conv1's weight [4, 3, 3, 3] stored as [3, 4, 3, 3]: same bytes, wrong shape.
  forge([&](Bytes& b) {
    size_t dims = find_str(b, "weight") + 4 + 6 + 1 + 4 + 4 + 4;
    put_i64(b, dims, 3);
    put_i64(b, dims + 8, 4);
  }, {"node 0 'conv1'", "param 'weight'", "[3, 4, 3, 3]", "[4, 3, 3, 3]"}, "param shape");
  // Shape inference itself fails: the fc after a changed pool stride still matches... but a
  // conv kernel larger than its input cannot be built.
  forge([&](Bytes& b) {
    size_t at = find_str(b, "kernel") + 4 + 6 + 1 + 4;   // conv1 kernel [3, 3] values
    put_i64(b, at, 99);
  }, {"node 0 'conv1'"}, "shape inference");
}

TEST(IoModel, AtomicSaveKeepsOldFileOnFailure) {
  TempDir t;
  const std::string path = t.file("m.deftnn");
  Model a = dag_net();
  save_model(a, path, {{"version", "a"}});
  const Bytes old = read_bytes(path);

  // Overwriting succeeds and leaves nothing else behind.
  save_model(a, path, {{"version", "b"}});
  EXPECT_EQ(load_model_metadata(path).at("version"), "b");
  save_model(a, path, {{"version", "a"}});
  int entries = 0;
  for (const auto& e : fs::directory_iterator(t.path())) {
    ++entries;
    EXPECT_EQ(e.path().string(), path) << "leftover file";
  }
  EXPECT_EQ(entries, 1);
  EXPECT_EQ(read_bytes(path), old);

  // The temporary cannot be created (a directory sits at its name, which defeats even root):
  // the save fails naming the path and the old file is untouched.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp);
  expect_error([&] { save_model(a, path, {{"version", "c"}}); }, {path});
  fs::remove(tmp);
  EXPECT_EQ(read_bytes(path), old);

  // The rename fails (a non-empty directory is in the way): no temporary is left behind.
  const std::string blocked = t.file("blocked");
  fs::create_directories(blocked + "/inside");
  expect_error([&] { save_model(a, blocked); }, {blocked});
  EXPECT_FALSE(fs::exists(blocked + ".tmp." + std::to_string(::getpid())));

  // A missing directory.
  const std::string nodir = t.file("no/such/dir/m.deftnn");
  expect_error([&] { save_model(a, nodir); }, {nodir});

  // An unwritable directory (only meaningful when not root: root writes anyway).
  if (::geteuid() != 0) {
    fs::permissions(t.path(), fs::perms::owner_read | fs::perms::owner_exec);
    expect_error([&] { save_model(a, path, {{"version", "d"}}); }, {path});
    fs::permissions(t.path(), fs::perms::owner_all, fs::perm_options::add);
    EXPECT_EQ(read_bytes(path), old);
  }
  EXPECT_EQ(load_model_metadata(path).at("version"), "a");
}

// printable() keeps valid UTF-8 (1 to 4 bytes), newline and tab, and escapes everything else
// byte by byte (hand-written expectations); the CLI prints errors through it, so a file name or
// a node name with control bytes cannot reach the terminal raw.
TEST(IoText, PrintableEscapesControlAndMalformedBytes) {
  EXPECT_EQ(printable("conv1 'a.b'\n\tok"), "conv1 'a.b'\n\tok");
  EXPECT_EQ(printable("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("\x1b[31mred\x7f"), "\\x1B[31mred\\x7F");
  EXPECT_EQ(printable("\xFF\xFE"), "\\xFF\\xFE");              // never valid in UTF-8
  EXPECT_EQ(printable("\xC3"), "\\xC3");                        // truncated sequence
  EXPECT_EQ(printable("\xC3(x"), "\\xC3(x");                    // bad continuation byte
  EXPECT_EQ(printable("\xC0\xAF"), "\\xC0\\xAF");               // overlong '/'
  EXPECT_EQ(printable("\xE0\x80\xAF"), "\\xE0\\x80\\xAF");      // overlong, 3 bytes
  EXPECT_EQ(printable("\xED\xA0\x80"), "\\xED\\xA0\\x80");      // a UTF-16 surrogate
  EXPECT_EQ(printable("\xF4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");   // above U+10FFFF
  EXPECT_EQ(printable("\xF4\x8F\xBF\xBF"), "\xF4\x8F\xBF\xBF");   // U+10FFFF itself
  EXPECT_EQ(printable(""), "");
}

TEST(IoText, CliErrorsNameBadFilesInPrintableText) {
  std::string out;
  const std::string dir = ::testing::TempDir();
  const std::string name = dir + "/bad\x1b[2J\xFFname.deft";
  {
    std::ofstream f(name, std::ios::binary);
    f << "not a model";
  }
  const int rc = test::run_cli("info '" + name + "'", &out);
  std::remove(name.c_str());
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("bad\\x1B[2J\\xFFname.deft"), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(out.find('\xFF'), std::string::npos);
}
