// A one-line progress bar with rate and ETA, drawn on stderr only when it is a terminal.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace deftnn {

class Progress {
 public:
  Progress(std::string label, int64_t total, const char* unit, bool enabled = true);
  ~Progress();
  void update(int64_t done, const std::string& extra = {});
  void finish();

 private:
  std::string label_;
  int64_t total_;
  const char* unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace deftnn
