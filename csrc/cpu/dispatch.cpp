// Chooses the CPU kernel set once, when the module loads: the best instruction
// set that this build has and this CPU runs, unless FASTMLP_FORCE_ISA names a
// lower one. Tests switch sets at run time with set_isa().
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/check.h"
#include "cpu/kernels.h"
#include "cpu/reference.h"

namespace fastmlp::cpu {
#define FASTMLP_DECLARE_ISA(name) \
  namespace name {                \
  void fill_table(KernelTable& t); \
  }
#ifdef FASTMLP_HAVE_generic
FASTMLP_DECLARE_ISA(generic)
#endif
#ifdef FASTMLP_HAVE_avx2
FASTMLP_DECLARE_ISA(avx2)
#endif
#ifdef FASTMLP_HAVE_avx512
FASTMLP_DECLARE_ISA(avx512)
#endif
#ifdef FASTMLP_HAVE_avx512bf16
FASTMLP_DECLARE_ISA(avx512bf16)
#endif
#undef FASTMLP_DECLARE_ISA

namespace {

struct Registry {
  // Index 0 is the naive reference; the rest are in increasing order of preference.
  KernelTable tables[5];
  const char* names[5];
  int count = 0;
  std::atomic<const KernelTable*> current{nullptr};

  void add(void (*fill)(KernelTable&)) {
    fill(tables[count]);
    names[count] = tables[count].isa;
    ++count;
  }

  const KernelTable* find(const char* name) const {
    for (int i = 0; i < count; ++i)
      if (std::strcmp(names[i], name) == 0) return &tables[i];
    return nullptr;
  }

  std::string list() const {
    std::string s;
    for (int i = 0; i < count; ++i) s += (i ? ", " : "") + std::string(names[i]);
    return s;
  }
};

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

#ifdef FASTMLP_HAVE_avx512bf16
// AVX512-BF16 (vdpbf16ps), on top of the AVX-512 set.
bool cpu_has_avx512bf16() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}
#endif

// Built on first use (when the module loads): every available set, then the choice.
Registry& registry() {
  static Registry r;
  static const bool initialised = [] {
    r.count = 0;  // a failed first attempt (bad FASTMLP_FORCE_ISA) starts over
    r.add(ref::fill_reference);
#ifdef FASTMLP_HAVE_generic
    r.add(generic::fill_table);
#endif
#ifdef FASTMLP_HAVE_avx2
    if (cpu_has_avx2()) r.add(avx2::fill_table);
#endif
#ifdef FASTMLP_HAVE_avx512
    if (cpu_has_avx512()) r.add(avx512::fill_table);
#endif
#ifdef FASTMLP_HAVE_avx512bf16
    if (cpu_has_avx512bf16()) r.add(avx512bf16::fill_table);
#endif
    const KernelTable* chosen = &r.tables[r.count - 1];
    if (const char* forced = std::getenv("FASTMLP_FORCE_ISA"); forced && *forced) {
      chosen = r.find(forced);
      FASTMLP_CHECK(chosen != nullptr, "FASTMLP_FORCE_ISA=", forced,
                    " is not an instruction set that this build has and this CPU runs; choose one of: ",
                    r.list());
    }
    r.current.store(chosen);
    return true;
  }();
  (void)initialised;
  return r;
}

}  // namespace

const KernelTable& kernels() { return *registry().current.load(std::memory_order_relaxed); }

const char* const* available_isas(int* count) {
  Registry& r = registry();
  *count = r.count;
  return r.names;
}

void set_isa(const char* name) {
  Registry& r = registry();
  const KernelTable* t = r.find(name);
  FASTMLP_CHECK(t != nullptr, "set_isa: '", name, "' is not available; choose one of: ", r.list());
  r.current.store(t);
}

}  // namespace fastmlp::cpu
