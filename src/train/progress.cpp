#include "train/progress.h"

#include <unistd.h>

#include <cstdio>

namespace deftnn {

Progress::Progress(std::string label, int64_t total, const char* unit, bool enabled)
    : label_(std::move(label)), total_(total), unit_(unit),
      enabled_(enabled && total > 0 && isatty(fileno(stderr))) {
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? done / elapsed : 0;
  double eta = rate > 0 ? (total_ - done) / rate : 0;
  const int width = 28;
  int filled = static_cast<int>(width * done / total_);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
  bar[width] = 0;
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %.0f %s/s ETA %d:%02d %s\x1b[K", label_.c_str(), bar,
               static_cast<long long>(done), static_cast<long long>(total_), rate, unit_,
               static_cast<int>(eta) / 60, static_cast<int>(eta) % 60, extra.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\r\x1b[K");
  std::fflush(stderr);
}

}  // namespace deftnn
