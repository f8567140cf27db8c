// Error checks for code that runs outside the hot loops (bindings, dispatch, setup).
// Kernels never print or exit: everything that can go wrong is checked before
// they are called, and a failed check throws, which pybind11 turns into ValueError.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastmlp {

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace fastmlp

#define FASTMLP_CHECK(cond, ...)                                            \
  do {                                                                      \
    if (!(cond)) throw std::invalid_argument(::fastmlp::str_cat(__VA_ARGS__)); \
  } while (0)
