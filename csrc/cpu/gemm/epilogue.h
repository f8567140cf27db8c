// Tile epilogue shared by the GEMM kernels of one instruction set (see
// TileEpilogue in gemm.h). Internal linkage only.
#pragma once

#include "cpu/gemm/gemm.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

inline ActMode act_mode(Act act) {
  switch (act) {
    case Act::Identity: return ActMode::None;
    case Act::ReLU: return ActMode::ReLU;
    case Act::LeakyReLU: return ActMode::Leaky;
    default: return ActMode::Pass;
  }
}

// The epilogue of problem p's tiles, for its last K block (a driver sets beta, read_c and
// final per K block when there are several).
inline TileEpilogue tile_epilogue(const Problem& p) {
  TileEpilogue e;
  e.alpha = p.alpha;
  e.beta = p.beta;
  e.read_c = p.beta != 0.0f;
  e.final = true;
  e.mode = act_mode(p.ep.act());
  e.act = p.ep.act();
  e.act_param = p.ep.act_param();
  return e;
}

template <Act A>
void act_rows_t(float* c, index_t ldc, index_t rows, index_t cols, float param) {
  for (index_t i = 0; i < rows; ++i) {
    float* r = c + i * ldc;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) r[j] = act_forward(A, r[j], param);
  }
}

// C = act(C) over a stored tile (the activations not applied in registers).
inline void act_rows(float* c, index_t ldc, index_t rows, index_t cols, Act act, float param) {
  switch (act) {
    case Act::Sigmoid: act_rows_t<Act::Sigmoid>(c, ldc, rows, cols, param); break;
    case Act::Tanh: act_rows_t<Act::Tanh>(c, ldc, rows, cols, param); break;
    case Act::GELU: act_rows_t<Act::GELU>(c, ldc, rows, cols, param); break;
    case Act::ReLU: act_rows_t<Act::ReLU>(c, ldc, rows, cols, param); break;
    case Act::LeakyReLU: act_rows_t<Act::LeakyReLU>(c, ldc, rows, cols, param); break;
    case Act::Identity: break;
  }
}

// w -= lr·c over a stored tile of `rows` rows by `cols` columns (GemmEpilogue::Kind::SgdStep).
// The product is kept in a register before the subtraction, so that it is rounded
// on its own as in the optimizer's SGD kernel, never fused into an FMA.
inline void descend_rows(float* w, index_t ldw, const float* c, index_t ldc, index_t rows, index_t cols,
                         float lr) {
  const vf l = vset1(lr);
  for (index_t i = 0; i < rows; ++i) {
    float* wr = w + i * ldw;
    const float* cr = c + i * ldc;
    index_t j = 0;
    for (; j + kW <= cols; j += kW) {
      vf step = vmul(l, vload(cr + j));
      in_register(step);
      vstore(wr + j, vsub(vload(wr + j), step));
    }
    if (j < cols) {
      const int n = static_cast<int>(cols - j);
      vf step = vmul(l, vload_n(cr + j, n));
      in_register(step);
      vstore_n(wr + j, vsub(vload_n(wr + j, n), step), n);
    }
  }
}

// z = alpha·acc (+ beta·c); on the final block z += bias, preact = z, then the
// in-register activation. One vector of one row; n valid lanes (n == kW: all).
template <bool Full>
inline void store_vec(float* c, float* z, const float* bias, vf acc, int n, const TileEpilogue& e) {
  // (Multiplying by 1 is exact, so skipping it changes no result; with a short K
  // these multiplies would take a tenth of the FMA unit's time.)
  vf x = e.alpha == 1.0f ? acc : vmul(acc, vset1(e.alpha));
  if (e.read_c) {
    const vf cv = Full ? vload(c) : vload_n(c, n);
    x = e.beta == 1.0f ? vadd(x, cv) : vfma(vset1(e.beta), cv, x);
  }
  if (e.final) {
    if (bias) x = vadd(x, Full ? vload(bias) : vload_n(bias, n));
    if (z) {
      if (Full)
        vstore(z, x);
      else
        vstore_n(z, x, n);
    }
    if (e.mode == ActMode::ReLU)
      x = vrelu(x);
    else if (e.mode == ActMode::Leaky)
      x = vleaky(x, vset1(e.act_param));
  }
  if (Full)
    vstore(c, x);
  else
    vstore_n(c, x, n);
}

// One row of a tile: NV accumulator vectors, the first nv columns valid.
template <int NV>
inline void store_row(float* c, float* z, const float* bias, const vf* acc, int nv,
                      const TileEpilogue& e) {
  if (nv == NV * kW) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      store_vec<true>(c + j * kW, z ? z + j * kW : nullptr, bias ? bias + j * kW : nullptr, acc[j],
                      kW, e);
    return;
  }
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) {
    const int n = nv - j * kW;
    if (n <= 0) break;
    if (n >= kW)
      store_vec<true>(c + j * kW, z ? z + j * kW : nullptr, bias ? bias + j * kW : nullptr, acc[j],
                      kW, e);
    else
      store_vec<false>(c + j * kW, z ? z + j * kW : nullptr, bias ? bias + j * kW : nullptr,
                       acc[j], n, e);
  }
}

}  // namespace
}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
