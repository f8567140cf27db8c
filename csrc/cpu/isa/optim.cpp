// Multi-tensor optimizer steps (torch.optim.SGD, Adam, AdamW) of one instruction set.
//
// One call updates every tensor of a parameter group. The tensors are treated as
// one concatenated array, which the threads share in equal runs of chunks (see
// for_all), so the work is balanced however unequal the tensors are (a 512x784
// weight next to a bias of 10) and however unequal the cores. Every element goes
// through the same SIMD code whatever chunk it lands in (the ragged ends use masked
// loads and stores), so the result does not depend on the thread count.
//
// The float32 operations and their order are the reference's (reference.cpp).
// The compiler would otherwise fuse a product into the following sum (an FMA
// rounds once, the reference twice), so in the SIMD copies every product passes
// through an empty asm statement that hides it from that fusion. The results are
// then bitwise those of the reference.
#include <atomic>
#include <cmath>
#include <cstdint>

#include "common/adam.h"
#include "cpu/isa/isa.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

// ---- lanes: the SIMD vector of this instruction set -------------------------------
// Vf holds kW floats. Full moves kW lanes; Part moves the first `n` < kW lanes
// (loads zero the others). mul() returns a product that the compiler cannot fuse
// into a later add.

#if defined(__AVX512F__)

constexpr index_t kW = 16;
struct Vf {
  __m512 r;
};
static inline Vf splat(float x) { return {_mm512_set1_ps(x)}; }
static inline Vf add(Vf a, Vf b) { return {_mm512_add_ps(a.r, b.r)}; }
static inline Vf sub(Vf a, Vf b) { return {_mm512_sub_ps(a.r, b.r)}; }
static inline Vf div(Vf a, Vf b) { return {_mm512_div_ps(a.r, b.r)}; }
// The all-lanes masked forms: the plain ones start from an undefined vector that GCC 12 warns about.
static inline Vf sqrt(Vf a) { return {_mm512_maskz_sqrt_ps(0xFFFF, a.r)}; }
static inline Vf mul(Vf a, Vf b) {
  __m512 p = _mm512_mul_ps(a.r, b.r);
  __asm__("" : "+v"(p));
  return {p};
}
// -x, exactly (the sign bit flipped, as the scalar negation does).
static inline Vf neg(Vf a) {
  const __m512i sign = _mm512_set1_epi32(INT32_MIN);
  return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.r), sign))};
}
// (a < b) ? b : a, as std::max(a, b): MAXPS returns its second operand unless the first is greater.
static inline Vf max(Vf a, Vf b) { return {_mm512_maskz_max_ps(0xFFFF, b.r, a.r)}; }

struct Full {
  static Vf load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static void store(float* p, Vf v) { _mm512_storeu_ps(p, v.r); }
};
struct Part {
  __mmask16 k;
  explicit Part(index_t n) : k(static_cast<__mmask16>((1u << n) - 1u)) {}
  Vf load(const float* p) const { return {_mm512_maskz_loadu_ps(k, p)}; }
  void store(float* p, Vf v) const { _mm512_mask_storeu_ps(p, k, v.r); }
};

#elif defined(__AVX2__)

constexpr index_t kW = 8;
struct Vf {
  __m256 r;
};
static inline Vf splat(float x) { return {_mm256_set1_ps(x)}; }
static inline Vf add(Vf a, Vf b) { return {_mm256_add_ps(a.r, b.r)}; }
static inline Vf sub(Vf a, Vf b) { return {_mm256_sub_ps(a.r, b.r)}; }
static inline Vf div(Vf a, Vf b) { return {_mm256_div_ps(a.r, b.r)}; }
static inline Vf sqrt(Vf a) { return {_mm256_sqrt_ps(a.r)}; }
static inline Vf mul(Vf a, Vf b) {
  __m256 p = _mm256_mul_ps(a.r, b.r);
  __asm__("" : "+x"(p));
  return {p};
}
static inline Vf neg(Vf a) { return {_mm256_xor_ps(a.r, _mm256_set1_ps(-0.0f))}; }
static inline Vf max(Vf a, Vf b) { return {_mm256_max_ps(b.r, a.r)}; }

struct Full {
  static Vf load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static void store(float* p, Vf v) { _mm256_storeu_ps(p, v.r); }
};
struct Part {
  __m256i k;  // lane i is on when its sign bit is set
  explicit Part(index_t n)
      : k(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))) {}
  Vf load(const float* p) const { return {_mm256_maskload_ps(p, k)}; }
  void store(float* p, Vf v) const { _mm256_maskstore_ps(p, k, v.r); }
};

#else  // portable: one float per "vector"; the compiler vectorizes the loops

constexpr index_t kW = 1;
// The tensors of one update never overlap (the bindings check), so the loops vectorize.
#define FASTMLP_OPTIM_SIMD _Pragma("omp simd")
struct Vf {
  float r;
};
static inline Vf splat(float x) { return {x}; }
static inline Vf add(Vf a, Vf b) { return {a.r + b.r}; }
static inline Vf sub(Vf a, Vf b) { return {a.r - b.r}; }
static inline Vf div(Vf a, Vf b) { return {a.r / b.r}; }
static inline Vf sqrt(Vf a) { return {std::sqrt(a.r)}; }
static inline Vf mul(Vf a, Vf b) { return {a.r * b.r}; }
static inline Vf neg(Vf a) { return {-a.r}; }
static inline Vf max(Vf a, Vf b) { return {a.r < b.r ? b.r : a.r}; }

struct Full {
  static Vf load(const float* p) { return {*p}; }
  static void store(float* p, Vf v) { *p = v.r; }
};
struct Part {  // never used: kW == 1 leaves no ragged end
  explicit Part(index_t) {}
  Vf load(const float* p) const { return {*p}; }
  void store(float* p, Vf v) const { *p = v.r; }
};

#endif

#ifndef FASTMLP_OPTIM_SIMD
#define FASTMLP_OPTIM_SIMD
#endif

// a - b·c rounded twice (product, then difference), for the per-call constants.
static float sub_product(float a, float b, float c) {
  volatile float product = b * c;
  return a - product;
}

// ---- splitting the concatenated tensors between threads ---------------------------

// Calls body(t, begin, end) for the part [begin, end) of tensor t that lies in the
// slice [lo, hi) of the concatenation of all tensors.
template <typename Body>
void for_slice(const index_t* sizes, index_t count, index_t lo, index_t hi, const Body& body) {
  index_t off = 0;
  for (index_t t = 0; t < count && off < hi; ++t) {
    const index_t end_of_t = off + sizes[t];
    const index_t b = lo > off ? lo - off : 0;
    const index_t e = hi < end_of_t ? hi - off : sizes[t];
    if (b < e) body(t, b, e);
    off = end_of_t;
  }
}

// The concatenation is cut into chunks of this many elements (a multiple of 16, so
// neighbouring chunks rarely share a cache line). Each thread owns an equal run of
// consecutive chunks and works through it in order; a thread that finishes its
// run takes the next untouched chunks of another's. With equal cores that never
// happens, and each core keeps touching the same memory from step to step (it
// stays in that core's cache). When one core runs slower (a busy sibling, a lower
// clock), the other takes over part of its run instead of waiting for it: on a
// 2-vCPU machine in such a spell, fixed halves made the first Adam step after a
// backward pass take 3x as long.
constexpr index_t kChunk = 4096;
constexpr int kMaxOptimThreads = 64;

// No per-thread state (see for_all).
struct NoGuard {};

// Runs body over every element of every tensor, on as many threads as the work
// (elements · cost_per_element) pays for. Each thread holds a Guard while it works.
// Every element goes through the same code whichever thread takes it, so results
// do not depend on the thread count or on who took which chunk.
template <typename Guard, typename Body>
void for_all(const index_t* sizes, index_t count, index_t cost_per_element, const Body& body) {
  index_t total = 0;
  for (index_t t = 0; t < count; ++t) total += sizes[t];
  const index_t chunks = (total + kChunk - 1) / kChunk;
  int nt = threads_for(total * cost_per_element);
  if (nt > kMaxOptimThreads) nt = kMaxOptimThreads;
  if (nt > chunks) nt = static_cast<int>(chunks);
  if (nt <= 1) {
    [[maybe_unused]] const Guard guard;
    for_slice(sizes, count, 0, total, body);
    return;
  }
  struct alignas(64) Run {
    std::atomic<index_t> next;  // first chunk of the run nobody has taken
    index_t end;
  };
  Run runs[kMaxOptimThreads];
  for (int i = 0; i < nt; ++i) {
    runs[i].next.store(chunks * i / nt, std::memory_order_relaxed);
    runs[i].end = chunks * (i + 1) / nt;
  }
#pragma omp parallel num_threads(nt)
  {
    [[maybe_unused]] const Guard guard;
    const int id = omp_get_thread_num();
    for (int k = 0; k < nt; ++k) {  // own run first, then the others' (all nt, however many threads came)
      Run& run = runs[(id + k) % nt];
      for (index_t c = run.next.fetch_add(1, std::memory_order_relaxed); c < run.end;
           c = run.next.fetch_add(1, std::memory_order_relaxed)) {
        const index_t lo = c * kChunk;
        for_slice(sizes, count, lo, lo + kChunk < total ? lo + kChunk : total, body);
      }
    }
  }
}

// Work per element in threads_for's units, from measurements: a second thread
// starts to pay from about 13k elements for Adam and 64k for SGD (which moves
// fewer bytes and does no division).
constexpr index_t kSgdCost = 1;
constexpr index_t kAdamCost = 5;

// ---- SGD ------------------------------------------------------------------------------

enum SgdFlags : int {
  kSgdMaximize = 1,
  kSgdDecay = 2,     // weight_decay != 0
  kSgdMomentum = 4,  // momentum != 0
  kSgdFirst = 8,     // momentum buffers start as d
  kSgdNesterov = 16,
};

struct SgdConsts {
  Vf lr, momentum, one_minus_dampening, weight_decay;
};

template <int F, typename IO>
inline void sgd_lanes(const IO& io, const SgdConsts& c, float* p, float* buf, const float* g, index_t i) {
  Vf pv = io.load(p + i);
  Vf d = io.load(g + i);
  if (F & kSgdMaximize) d = neg(d);
  if (F & kSgdDecay) d = add(d, mul(c.weight_decay, pv));
  if (F & kSgdMomentum) {
    Vf b = d;
    if (!(F & kSgdFirst)) b = add(mul(c.momentum, io.load(buf + i)), mul(c.one_minus_dampening, d));
    io.store(buf + i, b);
    d = (F & kSgdNesterov) ? add(d, mul(c.momentum, b)) : b;
  }
  io.store(p + i, sub(pv, mul(c.lr, d)));
}

template <int F>
void sgd_range(const SgdConsts& c, float* p, float* buf, const float* g, index_t n) {
  const Full full;
  const index_t body = n - n % kW;
  FASTMLP_OPTIM_SIMD
  for (index_t i = 0; i < body; i += kW) sgd_lanes<F>(full, c, p, buf, g, i);
  if (body < n) sgd_lanes<F>(Part(n - body), c, p, buf, g, body);
}

// One variant over all tensors. The parallel region calls sgd_range<F> directly (no
// call through a pointer that might throw, which would need exception tables there).
template <int F>
void sgd_all(const SgdConsts& c, float* const* params, float* const* bufs, const float* const* grads,
             const index_t* sizes, index_t count) {
  for_all<NoGuard>(sizes, count, kSgdCost, [&](index_t t, index_t b, index_t e) {
    sgd_range<F>(c, params[t] + b, (F & kSgdMomentum) ? bufs[t] + b : nullptr, grads[t] + b, e - b);
  });
}

using SgdAllFn = void (*)(const SgdConsts&, float* const*, float* const*, const float* const*,
                          const index_t*, index_t);
#define FASTMLP_SGD4(f) sgd_all<f>, sgd_all<f + 1>, sgd_all<f + 2>, sgd_all<f + 3>
const SgdAllFn kSgdAll[32] = {FASTMLP_SGD4(0),  FASTMLP_SGD4(4),  FASTMLP_SGD4(8),  FASTMLP_SGD4(12),
                              FASTMLP_SGD4(16), FASTMLP_SGD4(20), FASTMLP_SGD4(24), FASTMLP_SGD4(28)};
#undef FASTMLP_SGD4

// torch.optim.SGD, for every tensor:
//   d = ±g (+ wd·p)
//   with momentum: buf = d on the first step, else μ·buf + (1-τ)·d;  d = d + μ·buf (nesterov) or buf
//   p -= lr·d
void sgd_step_kernel(float* const* params, float* const* momentum_bufs, const float* const* grads,
                     const index_t* sizes, index_t count, const SgdOptions& o) {
  const bool momentum = o.momentum != 0.0f;
  const int flags = (o.maximize ? kSgdMaximize : 0) | (o.weight_decay != 0.0f ? kSgdDecay : 0) |
                    (momentum ? kSgdMomentum : 0) | (momentum && o.first_step ? kSgdFirst : 0) |
                    (momentum && o.nesterov ? kSgdNesterov : 0);
  const SgdConsts c{splat(o.lr), splat(o.momentum), splat(1.0f - o.dampening), splat(o.weight_decay)};
  kSgdAll[flags](c, params, momentum_bufs, grads, sizes, count);
}

// ---- Adam / AdamW -------------------------------------------------------------------

enum AdamFlags : int {
  kAdamMaximize = 1,
  kAdamL2 = 2,         // Adam: g += wd·p
  kAdamDecoupled = 4,  // AdamW: p *= 1 - lr·wd
  kAdamAmsgrad = 8,
};

struct AdamConsts {
  Vf one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, step_size;
};

template <int F, typename IO>
inline void adam_lanes(const IO& io, const AdamConsts& c, float* p, float* m, float* v, float* vmax,
                       const float* g, index_t i) {
  Vf pv = io.load(p + i);
  Vf gv = io.load(g + i);
  if (F & kAdamMaximize) gv = neg(gv);
  if (F & kAdamL2) gv = add(gv, mul(c.weight_decay, pv));
  if (F & kAdamDecoupled) pv = mul(pv, c.decay);
  Vf mv = io.load(m + i);
  mv = add(mv, mul(c.one_minus_beta1, sub(gv, mv)));
  io.store(m + i, mv);
  Vf vv = add(mul(c.beta2, io.load(v + i)), mul(mul(c.one_minus_beta2, gv), gv));
  io.store(v + i, vv);
  if (F & kAdamAmsgrad) {
    vv = max(io.load(vmax + i), vv);
    io.store(vmax + i, vv);
  }
  const Vf denom = add(sqrt(vv), c.eps);
  io.store(p + i, sub(pv, mul(c.step_size, div(mv, denom))));
}

template <int F>
void adam_range(const AdamConsts& c, float* p, float* m, float* v, float* vmax, const float* g,
                index_t n) {
  const Full full;
  const index_t body = n - n % kW;
  FASTMLP_OPTIM_SIMD
  for (index_t i = 0; i < body; i += kW) adam_lanes<F>(full, c, p, m, v, vmax, g, i);
  if (body < n) adam_lanes<F>(Part(n - body), c, p, m, v, vmax, g, body);
}

template <int F>
void adam_all(const AdamConsts& c, float* const* params, float* const* ms, float* const* vs,
              float* const* vmaxs, const float* const* grads, const index_t* sizes, index_t count) {
  // Denormals flushed on every thread that works: see common/adam.h.
  for_all<FlushDenormals>(sizes, count, kAdamCost, [&](index_t t, index_t b, index_t e) {
    adam_range<F>(c, params[t] + b, ms[t] + b, vs[t] + b, (F & kAdamAmsgrad) ? vmaxs[t] + b : nullptr,
                  grads[t] + b, e - b);
  });
}

using AdamAllFn = void (*)(const AdamConsts&, float* const*, float* const*, float* const*, float* const*,
                           const float* const*, const index_t*, index_t);
#define FASTMLP_ADAM4(f) adam_all<f>, adam_all<f + 1>, adam_all<f + 2>, adam_all<f + 3>
const AdamAllFn kAdamAll[16] = {FASTMLP_ADAM4(0), FASTMLP_ADAM4(4), FASTMLP_ADAM4(8), FASTMLP_ADAM4(12)};
#undef FASTMLP_ADAM4

// torch.optim.Adam / AdamW, for every tensor, with t = step:
//   g = ±g (+ wd·p for Adam; p *= 1 - lr·wd for AdamW)
//   m += (1-β1)·(g - m);  v = β2·v + (1-β2)·g·g;  v̂ = max(v̂, v) with amsgrad
//   p -= lr/(1-β1^t) · m / (sqrt(v or v̂)/sqrt(1-β2^t) + eps)
// computed as p -= step_size · m / (sqrt(v or v̂) + eps_hat): see common/adam.h.
void adam_step_kernel(float* const* params, float* const* exp_avgs, float* const* exp_avg_sqs,
                      float* const* max_exp_avg_sqs, const float* const* grads, const index_t* sizes,
                      index_t count, const AdamOptions& o) {
  const bool decay = o.weight_decay != 0.0f;
  const int flags = (o.maximize ? kAdamMaximize : 0) | (decay && !o.decoupled_weight_decay ? kAdamL2 : 0) |
                    (decay && o.decoupled_weight_decay ? kAdamDecoupled : 0) |
                    (o.amsgrad ? kAdamAmsgrad : 0);
  const AdamScalars s = adam_scalars(o.lr, o.beta1, o.beta2, o.eps, o.step);
  const AdamConsts c{splat(1.0f - o.beta1),
                     splat(o.beta2),
                     splat(1.0f - o.beta2),
                     splat(s.eps_hat),
                     splat(o.weight_decay),
                     splat(sub_product(1.0f, o.lr, o.weight_decay)),
                     splat(s.step_size)};
  kAdamAll[flags](c, params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, sizes, count);
}

}  // namespace

void fill_optim(KernelTable& t) {
  t.sgd_step = sgd_step_kernel;
  t.adam_step = adam_step_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
