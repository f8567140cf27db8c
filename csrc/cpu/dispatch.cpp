// Chooses the CPU kernel set once, when the module loads: the best instruction
// set that this build has and this CPU runs, unless FASTMLP_FORCE_ISA names a
// lower one. Tests switch sets at run time with set_isa().
#include <atomic>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
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
#ifdef FASTMLP_HAVE_amx
FASTMLP_DECLARE_ISA(amx)
#endif
#undef FASTMLP_DECLARE_ISA

namespace {

struct Registry {
  // Index 0 is the naive reference; the rest are in increasing order of preference.
  KernelTable tables[6];
  const char* names[6];
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

#if defined(FASTMLP_HAVE_avx512bf16) || defined(FASTMLP_HAVE_amx)
// AVX512-BF16 (vdpbf16ps), on top of the AVX-512 set.
bool cpu_has_avx512bf16() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}
#endif

// Why the amx set is, or is not, among the available ones (fastmlp info).
const char* g_amx_status = "not in this build";

#ifdef FASTMLP_HAVE_amx
// AMX tiles with bfloat16 products, on top of the AVX512-BF16 set; the OS must also grant
// the process the tile state: Linux asks for arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)
// first, and kills a process that touches the tiles without it. A refusal (an old kernel, a
// sandbox) leaves the set out, and the avx512bf16 set is the best one.
bool amx_usable() {
#if defined(__x86_64__) && defined(__linux__)
  if (!(cpu_has_avx512bf16() && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16"))) {
    g_amx_status = "this CPU has no AMX-BF16";
    return false;
  }
  constexpr long kGetPerm = 0x1022, kReqPerm = 0x1023, kXtiledata = 18;
  unsigned long granted = 0;
  if (syscall(SYS_arch_prctl, kReqPerm, kXtiledata) != 0 || syscall(SYS_arch_prctl, kGetPerm, &granted) != 0 ||
      !(granted & (1ul << kXtiledata))) {
    g_amx_status = "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)";
    return false;
  }
  g_amx_status = "available";
  return true;
#else
  g_amx_status = "AMX needs x86-64 Linux";
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
#ifdef FASTMLP_HAVE_amx
    if (amx_usable()) r.add(amx::fill_table);
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

const char* amx_status() {
  (void)registry();
  return g_amx_status;
}

void set_isa(const char* name) {
  Registry& r = registry();
  const KernelTable* t = r.find(name);
  FASTMLP_CHECK(t != nullptr, "set_isa: '", name, "' is not available; choose one of: ", r.list());
  r.current.store(t);
}

}  // namespace fastmlp::cpu
