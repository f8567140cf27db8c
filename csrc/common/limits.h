// Size limits of the native entry points, shared by the CPU and CUDA bindings.
//
// A binding that creates an array whose size it computes (a product of dimensions
// taken from different arguments, or a count given as a plain integer) checks the
// product for overflow and against these limits first, and raises ValueError naming
// the argument past them, instead of wrapping around, allocating for minutes or
// writing through a buffer that was never allocated. docs/reliability.md lists them.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace fastmlp {

// Elements of one array a binding creates: 2**31 - 1 (8 GiB of float32).
inline constexpr std::int64_t kMaxElements = (std::int64_t(1) << 31) - 1;
// Words philox_bits returns: 2**28 (1 GiB; a few seconds on one CPU core). It is a
// test and reproduction aid that computes each word on its own.
inline constexpr std::int64_t kMaxPhiloxWords = std::int64_t(1) << 28;

// The product of `dims` (any container of integers) when every dim is >= 0 and the
// product is <= limit, else -1. A zero dim makes the product 0 whatever the others.
template <typename Dims>
std::int64_t checked_product(const Dims& dims, std::int64_t limit) {
  std::int64_t n = 1;
  bool zero = false;
  bool over = false;
  for (const auto dim : dims) {
    const std::int64_t d = static_cast<std::int64_t>(dim);
    if (d < 0) return -1;
    if (d == 0) zero = true;
    if (over) continue;
    if (__builtin_mul_overflow(n, d, &n) || n > limit) over = true;
  }
  if (zero) return 0;
  return over ? -1 : n;
}
inline std::int64_t checked_product(std::initializer_list<std::int64_t> dims, std::int64_t limit) {
  return checked_product<std::initializer_list<std::int64_t>>(dims, limit);
}

}  // namespace fastmlp
