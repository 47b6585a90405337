// Per-layer forward and backward time of one training step (batch 64 by default) of a zoo
// network on random data: where training time goes.
//   bench_train_step [net] [batch] [iters] [C,H,W]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "deftnn/profile.h"
#include "deftnn/train.h"
#include "deftnn/zoo.h"

using namespace deftnn;

int main(int argc, char** argv) {
  std::string net = argc > 1 ? argv[1] : "lenet";
  int64_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  int iters = argc > 3 ? std::atoi(argv[3]) : 30;
  ZooOptions opt;
  if (net == "cifarnet") opt.input = {1, 32, 32};
  Model m = build_zoo(net, opt);
  m.init_params(1);
  Shape s{batch};
  s.insert(s.end(), m.input_shape().begin(), m.input_shape().end());
  Tensor x(s);
  Rng rng(3);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(0.f, 1.f);
  std::vector<int32_t> y(batch);
  int64_t classes = m.output_shape(1).back();
  for (auto& v : y) v = static_cast<int32_t>(rng.below(classes));
  m.set_timing(true);
  Sgd sgd(0.9, 5e-4);
  Tensor d;
  size_t n = m.nodes().size();
  std::vector<std::vector<double>> fw(n), bw(n);
  std::vector<double> loss_ms, sgd_ms, total;
  for (int it = 0; it < iters + 3; ++it) {
    auto t0 = std::chrono::steady_clock::now();
    m.forward(x, true, &rng);
    auto t1 = std::chrono::steady_clock::now();
    softmax_cross_entropy(m.forward(x, true, &rng), y.data(), &d);
    m.zero_grad();
    m.backward(d, &rng);
    auto t2 = std::chrono::steady_clock::now();
    sgd.step(m, 0.001);
    auto t3 = std::chrono::steady_clock::now();
    if (it < 3) continue;
    for (size_t i = 0; i < n; ++i) {
      fw[i].push_back(m.timings()[i].forward_ms);
      bw[i].push_back(m.timings()[i].backward_ms);
    }
    sgd_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
    total.push_back(std::chrono::duration<double, std::milli>(t3 - t1).count() -
                    0 * std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::printf("%s training step, batch %lld, %d threads (medians of %d)\n", net.c_str(),
              static_cast<long long>(batch), omp_get_max_threads(), iters);
  std::printf("%-8s %-8s %10s %10s\n", "layer", "type", "fwd ms", "bwd ms");
  for (size_t i = 0; i < n; ++i)
    std::printf("%-8s %-8s %10.3f %10.3f\n", m.nodes()[i].name.c_str(),
                m.nodes()[i].layer->type().c_str(), median(fw[i]), median(bw[i]));
  std::printf("sgd %.3f ms; whole step (fwd + loss + bwd + sgd) %.3f ms -> %.1f s per 60000 images\n",
              median(sgd_ms), median(total), median(total) * 60000.0 / batch / 1000.0);
  return 0;
}
