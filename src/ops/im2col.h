// im2col / col2im for one image of one convolution group (internal to src/ops).
//
// The column matrix has K = C * kh * kw rows and OH * OW columns; row r = (c * kh + i) * kw + j
// holds input channel c sampled at kernel offset (i, j) for every output position. A row is the
// unit of work, so that synapse vector elimination can build a matrix of only the retained rows:
// im2col_rows() takes the list of K rows to keep (in the order they should appear) and writes
// them contiguously; im2col_range() writes the rows [r0, r1).
#pragma once
#include <cstdint>

namespace deftnn::ops {

struct ConvGeom {
  int64_t C = 0, H = 0, W = 0;          // input channels (of this group) and spatial size
  int64_t kh = 1, kw = 1;               // kernel
  int64_t sh = 1, sw = 1;               // stride
  int64_t pt = 0, pl = 0;               // top / left padding (bottom/right only affect OH, OW)
  int64_t dh = 1, dw = 1;               // dilation
  int64_t OH = 0, OW = 0;               // output spatial size
  int64_t rows() const { return C * kh * kw; }
  int64_t cols() const { return OH * OW; }
  // True when the column matrix equals the input (1x1 kernel, stride 1, no padding).
  bool identity() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  }
};

// Writes row r of the column matrix (OH * OW floats) from image x [C, H, W].
void im2col_row(const ConvGeom& g, const float* x, int64_t r, float* out);
// Adds row r of a column matrix back into image dx [C, H, W] (the transpose of im2col_row).
void col2im_row(const ConvGeom& g, const float* col_row, int64_t r, float* dx);

// The full column matrix [K, OH * OW]. `ld` is the distance between rows of col (0 means
// OH * OW); a larger ld lets several images sit side by side in one matrix [K, images * OH*OW].
void im2col(const ConvGeom& g, const float* x, float* col, int64_t ld = 0);
// Rows [r0, r1) into col [(r1 - r0), OH * OW].
void im2col_range(const ConvGeom& g, const float* x, int64_t r0, int64_t r1, float* col,
                  int64_t ld = 0);
// Rows rows[0..n) into col [n, OH * OW] (row i of col is geometry row rows[i]).
void im2col_rows(const ConvGeom& g, const float* x, const int64_t* rows, int64_t n, float* col,
                 int64_t ld = 0);
// dx [C, H, W] = col2im(col); overwrites dx (zeroes it first).
void col2im(const ConvGeom& g, const float* col, float* dx);
// The transpose of im2col_rows: dx [C, H, W] = sum over i of row i of col [n, OH * OW] added at
// geometry row rows[i]; overwrites dx (zeroes it first). Rows not listed contribute nothing (the
// gradient of a discarded synapse vector's input is zero). Sequential (callers run it per image).
void col2im_rows(const ConvGeom& g, const float* col, const int64_t* rows, int64_t n, float* dx,
                 int64_t ld = 0);

}  // namespace deftnn::ops
