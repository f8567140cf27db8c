// Philox4x32-10 counter-based generator (Salmon et al., "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011). A pure function of (key, counter), so every
// element's random bits depend only on (seed, offset, index): the same on any
// thread count and on the CPU and the GPU.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace fastmlp {

struct Philox4 {
  std::uint32_t v[4];
};

FASTMLP_HD Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                 std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  const std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The 32 random bits of element `i` of the stream (seed, offset): elements 4j..4j+3
// share one Philox block with counter (j, offset).
FASTMLP_HD std::uint32_t philox_bits(std::uint64_t seed, std::uint64_t offset, std::uint64_t i) {
  const std::uint64_t block = i >> 2;
  const Philox4 r = philox4x32_10(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                  static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(offset >> 32),
                                  static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  return r.v[i & 3];
}

// Dropout keeps element i when its bits are >= this threshold (probability 1-p).
FASTMLP_HD std::uint32_t dropout_threshold(float p) {
  const double t = static_cast<double>(p) * 4294967296.0;
  return t <= 0.0 ? 0u : (t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(t));
}

}  // namespace fastmlp
