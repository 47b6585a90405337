// printable(): see include/deftnn/error.h.
#include <cstdint>
#include <cstdio>

#include "deftnn/error.h"

namespace deftnn {

std::string printable(std::string_view t) {
  std::string out;
  out.reserve(t.size());
  auto escape = [&](unsigned char c) {
    char buf[5];
    std::snprintf(buf, sizeof buf, "\\x%02X", c);
    out += buf;
  };
  const size_t n = t.size();
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) escape(c);
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Lead byte: length and the smallest code point that needs that length (no overlongs).
    int len = 0;
    uint32_t cp = 0, min = 0;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    bool ok = len > 0 && i + static_cast<size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(t[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (d & 0x3F);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(t.substr(i, static_cast<size_t>(len)));
      i += static_cast<size_t>(len);
    } else {
      escape(c);   // one byte; the next one is looked at afresh
      ++i;
    }
  }
  return out;
}

}  // namespace deftnn
