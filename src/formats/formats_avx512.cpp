// deftnn: avx512 fast paths of the bulk format conversions (see src/formats/simd.h).
#include "formats/simd.h"

namespace deftnn::formats_simd {

bool encode_supported_avx512(Format, Rounding) { return false; }
bool decode_supported_avx512(Format) { return false; }
bool encode_avx512(Format, Rounding, const float*, void*, int64_t) { return false; }
bool decode_avx512(Format, const void*, float*, int64_t) { return false; }

}  // namespace deftnn::formats_simd
