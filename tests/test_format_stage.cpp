// The optimiser's format stage (deftnn/format_stage.h) on a small random model whose labels are
// its own fp32 predictions (base accuracy 100%), checked with independent evaluations.
#include <gtest/gtest.h>

#include <algorithm>

#include "deftnn/error.h"
#include "deftnn/format_stage.h"
#include "deftnn/rng.h"
#include "deftnn/train.h"

namespace deftnn {
namespace {

Model small_model() {
  Model m({1, 8, 8});
  m.add("conv1", "conv", Attrs().set("out_channels", 6).set("kernel", 3));
  m.add("relu1", "relu", Attrs());
  m.add("fc1", "fc", Attrs().set("out_features", 40));
  m.add("relu2", "relu", Attrs());
  m.add("fc2", "fc", Attrs().set("out_features", 10));
  m.init_params(3);
  return m;
}

Dataset self_labelled(Model& m, int64_t n) {
  Dataset d;
  d.name = "random/self-labelled";
  d.num_classes = 10;
  d.images = Tensor({n, 1, 8, 8});
  Rng rng(9);
  for (int64_t i = 0; i < d.images.numel(); ++i) d.images[i] = rng.uniform(0.0f, 1.0f);
  const Tensor& y = m.forward(d.images);
  for (int64_t i = 0; i < n; ++i) {
    int best = 0;
    for (int c = 1; c < 10; ++c)
      if (y[i * 10 + c] > y[i * 10 + best]) best = c;
    d.labels.push_back(best);
  }
  return d;
}

TEST(FormatStage, GenerousBudgetTakesTheFirstCandidateEverywhere) {
  Model m = small_model();
  Dataset d = self_labelled(m, 300);
  FormatStageOptions o;
  o.formats = {Format::deft8_e4, Format::bf16};
  o.max_accuracy_loss = 1.0;
  int lines = 0;
  o.progress = [&](const std::string& s) {
    ++lines;
    EXPECT_NE(s.find("deft8_e4"), std::string::npos) << s;
  };
  const FormatStageResult r = choose_formats(m, d, o);
  EXPECT_DOUBLE_EQ(r.base_accuracy, 1.0);
  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.layers[0].first, "conv1");   // graph order
  EXPECT_EQ(r.layers[2].first, "fc2");
  for (const auto& [name, f] : r.layers) {
    EXPECT_EQ(f, Format::deft8_e4) << name;
    EXPECT_EQ(layer_format(*m.nodes()[m.find(name)].layer), Format::deft8_e4) << name;
  }
  EXPECT_EQ(lines, 3);
  EXPECT_EQ(r.evaluations, 4);   // fp32 + one try per layer
  EXPECT_EQ(r.spec.parts.size(), 3u);
  // The reported accuracy is the model's, as left.
  EXPECT_DOUBLE_EQ(evaluate(m, d, 128, false).top1, r.accuracy);
}

TEST(FormatStage, ZeroBudgetNeverLosesAPrediction) {
  Model m = small_model();
  Dataset d = self_labelled(m, 400);
  FormatStageOptions o;
  o.formats = {Format::deft8_e1, Format::deft8_e2, Format::deft16};
  o.max_accuracy_loss = 0.0;
  const FormatStageResult r = choose_formats(m, d, o);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(evaluate(m, d, 64, false).top1, 1.0);
  // Applying the returned spec to a fresh copy gives the same formats (the spec is complete).
  Model fresh = small_model();
  apply_format_spec(fresh, r.spec);
  for (const auto& [name, f] : r.layers)
    EXPECT_EQ(layer_format(*fresh.nodes()[fresh.find(name)].layer), f) << name;
  // A layer only stays fp32 after every candidate was tried for it.
  int tries = 1;
  for (const auto& [name, f] : r.layers) {
    const auto it = std::find(o.formats.begin(), o.formats.end(), f);
    tries += it == o.formats.end() ? 3 : static_cast<int>(it - o.formats.begin()) + 1;
  }
  EXPECT_EQ(r.evaluations, tries);
}

TEST(FormatStage, BadInputIsRejected) {
  Model m = small_model();
  Dataset empty;
  empty.name = "nothing";
  FormatStageOptions o;
  EXPECT_THROW(choose_formats(m, empty, o), Error);
  Dataset d = self_labelled(m, 20);
  o.max_accuracy_loss = -0.1;
  EXPECT_THROW(choose_formats(m, d, o), Error);
  o.max_accuracy_loss = 0.01;
  o.formats.clear();
  EXPECT_THROW(choose_formats(m, d, o), Error);
}

}  // namespace
}  // namespace deftnn
