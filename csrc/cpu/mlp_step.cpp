#include "cpu/mlp_step.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <limits>

namespace fastmlp::cpu {

namespace {

// Sizes the tape's buffers for `batch` rows of `layers` (they only grow).
void size_tape(MlpTape& t, const std::vector<MlpLayer>& layers, index_t batch) {
  const size_t n = layers.size();
  t.y.resize(n);
  t.z.resize(n);
  t.dropped.resize(n);
  t.mask.resize(n);
  t.inputs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const MlpLayer& L = layers[i];
    const size_t cells = static_cast<size_t>(batch) * static_cast<size_t>(L.out);
    auto grow = [cells](auto& v) {
      if (v.size() < cells) v.resize(cells);
    };
    grow(t.y[i]);
    if (act_backward_needs_input(L.act)) grow(t.z[i]);
    if (L.dropout > 0.0f) {
      grow(t.dropped[i]);
      grow(t.mask[i]);
    }
  }
}

void size_scratch(MlpScratch& s, const std::vector<MlpLayer>& layers, index_t batch) {
  const size_t n = layers.size();
  s.grad.resize(n);
  index_t widest = 1;
  for (size_t i = 0; i < n; ++i) {
    const size_t cells = static_cast<size_t>(batch) * static_cast<size_t>(layers[i].out);
    // grad[i] for i < last: w.r.t. layer i's output; grad[last]: the gradient through
    // the last layer's dropout, when it has one
    if ((i + 1 < n || layers[i].dropout > 0.0f) && s.grad[i].size() < cells) s.grad[i].resize(cells);
    widest = std::max(widest, layers[i].out);
  }
  const size_t dz = static_cast<size_t>(batch) * static_cast<size_t>(widest);
  if (s.dz.size() < dz) s.dz.resize(dz);
}

int count_dropout(const std::vector<MlpLayer>& layers) {
  int n = 0;
  for (const MlpLayer& L : layers) n += L.dropout > 0.0f;
  return n;
}

// forward:  h_{i+1} = drop(act(h_i·W_iᵀ + b_i))      logits = h_L·W_Lᵀ + b_L
// loss:     softmax cross-entropy, mean over the batch, gradient dlogits in the same pass
// backward: dz = g·act'(·) (g after the dropout mask); dW_i = dzᵀ·h_i; db_i = Σ dz; g = dz·W_i

// The optimizer update of rows [r0, r1) of one layer's weight and of the same
// entries of its bias (see MlpUpdate).
void update_rows(const KernelTable& k, const MlpUpdate& u, const MlpLayer& L, index_t r0, index_t r1) {
  float* params[2];
  const float* grads[2];
  float* states[3][2];
  index_t sizes[2];
  index_t count = 0;
  auto add = [&](const float* p, index_t size) {
    const std::ptrdiff_t off = p - u.param;
    params[count] = u.param + off;
    grads[count] = u.grad + off;
    for (int s = 0; s < 3; ++s) states[s][count] = u.state[s] ? u.state[s] + off : nullptr;
    sizes[count] = size;
    ++count;
  };
  add(L.W + r0 * L.in, (r1 - r0) * L.in);
  if (L.b) add(L.b + r0, r1 - r0);
  if (u.kind == MlpUpdate::Kind::Adam)
    k.adam_step(params, states[0], states[1], u.state[2] ? states[2] : nullptr, grads, sizes, count, u.adam);
  else
    k.sgd_step(params, u.state[0] ? states[0] : nullptr, grads, sizes, count, u.sgd);
}

// Whether the update is a plain SGD step (no momentum, weight decay or maximize),
// which the weight gradient's GEMM can apply itself (GemmEpilogue::Kind::SgdStep).
bool plain_sgd(const MlpUpdate& u) {
  return u.kind == MlpUpdate::Kind::Sgd && u.sgd.momentum == 0.0f && u.sgd.weight_decay == 0.0f &&
         !u.sgd.maximize;
}

// The update of a layer's bias alone (its weight is updated by the GEMM).
void update_bias(const KernelTable& k, const MlpUpdate& u, const MlpLayer& L) {
  if (!L.b) return;
  float* params[1] = {u.param + (L.b - u.param)};
  const float* grads[1] = {u.grad + (L.b - u.param)};
  const index_t sizes[1] = {L.out};
  k.sgd_step(params, nullptr, grads, sizes, 1, u.sgd);
}

// Threads for the weight gradient and update of a layer with no input gradient:
// as many as the larger of the two kernels would take alone (the GEMM's and the
// optimizers' thresholds, in the same units), at most one per row.
int rows_threads(const MlpLayer& L, index_t batch, const MlpUpdate& u) {
  if (u.kind == MlpUpdate::Kind::None || omp_in_parallel()) return 1;
  const double gemm = static_cast<double>(L.out) * static_cast<double>(L.in) * static_cast<double>(batch + 8);
  const double update = static_cast<double>(L.out) * static_cast<double>(L.in + 1) *
                        (u.kind == MlpUpdate::Kind::Adam ? 5.0 : 1.0);
  const double by_work = std::max(gemm / (1 << 18), update / (1 << 15));
  const int avail = omp_get_max_threads();
  int nt = by_work < 2.0 ? 1 : (by_work < avail ? static_cast<int>(by_work) : avail);
  if (nt > L.out) nt = static_cast<int>(L.out);
  return nt;
}

// dW (and the update) of the first layer, which has no input gradient to wait for:
// each thread forms the gradient of its share of the rows of W (dW rows = dzᵀ·x over
// those rows) and updates them at once, while they are in its cache: one parallel
// region instead of one for the GEMM and one for the optimizer (0.89-0.95x the step
// time of the seed-001 network at batch 10). Each element of dW is the same sum
// whichever rows a call covers (the GEMM's arithmetic per element does not depend on
// how C is split), and the update is elementwise, so the results are bitwise those
// of the whole-layer calls. The bias gradient must be final before the call. The
// rows are split in equal counts, as the GEMM itself splits them (finer blocks,
// shared by work stealing, measured slower).
void grad_and_update_rows(const KernelTable& k, GemmFn gemm, const MlpUpdate& u, const MlpLayer& L, const float* dz,
                          const float* x, index_t batch, int nt) {
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), count = omp_get_num_threads();
    const index_t r0 = t * L.out / count, r1 = (t + 1) * L.out / count;
    if (r1 > r0) {
      gemm(L.dW + r0 * L.in, L.in, dz + r0, L.out, x, L.in, r1 - r0, L.in, batch, true, false, 1.0f, 0.0f,
             GemmEpilogue{});
      update_rows(k, u, L, r0, r1);
    }
  }
}

// The gradient with respect to layer ii's input: into gp (the previous layer's
// output gradient, then through its dropout mask) for ii > 0, else into dx if wanted.
void input_gradient(const KernelTable& k, GemmFn gemm, const std::vector<MlpLayer>& layers, const MlpTape& t, size_t ii,
                    const float* dz, float* gp, float* dx) {
  const MlpLayer& L = layers[ii];
  const index_t batch = t.batch;
  if (ii > 0) {
    const MlpLayer& P = layers[ii - 1];
    gemm(gp, P.out, dz, L.out, L.W, L.in, batch, L.in, L.out, false, false, 1.0f, 0.0f, GemmEpilogue{});
    if (P.dropout > 0.0f) k.dropout_backward(gp, gp, t.mask[ii - 1].data(), batch * P.out, P.dropout, false);
  } else if (dx) {
    gemm(dx, L.in, dz, L.out, L.W, L.in, batch, L.in, L.out, false, false, 1.0f, 0.0f, GemmEpilogue{});
  }
}

// The forward pass of `layers` on x [batch, in0] into `tape`; dropout layer j (in
// order) uses Philox stream (seeds[j], offsets[j]). With `out` non-null the last
// layer writes its output there, else into the tape. The same kernels in the same
// order as the eager Linear/activation/Dropout modules.
void mlp_forward(const std::vector<MlpLayer>& layers, bool bf16, MlpTape& t, const float* x, index_t batch,
                 const std::uint64_t* seeds, const std::uint64_t* offsets, float* out = nullptr) {
  const KernelTable& k = kernels();
  const GemmFn gemm = bf16 ? k.gemm_bf16 : k.gemm;
  const size_t n = layers.size();
  t.batch = batch;
  const float* h = x;
  int dj = 0;
  for (size_t i = 0; i < n; ++i) {
    const MlpLayer& L = layers[i];
    t.inputs[i] = h;
    const bool last = i + 1 == n;
    const bool keep_z = act_backward_needs_input(L.act);
    const GemmEpilogue ep =
        GemmEpilogue::with_bias_act(L.b, L.act, L.act_param, keep_z ? t.z[i].data() : nullptr, keep_z ? L.out : 0);
    float* y = last && out && L.dropout == 0.0f ? out : t.y[i].data();
    gemm(y, L.out, h, L.in, L.W, L.in, batch, L.out, L.in, false, true, 1.0f, 0.0f, ep);
    h = y;
    if (L.dropout > 0.0f) {
      float* d = last && out ? out : t.dropped[i].data();
      k.dropout_forward(d, t.mask[i].data(), y, batch * L.out, L.dropout, seeds[dj], offsets[dj]);
      ++dj;
      h = d;
    }
  }
  t.output = h;
}

// The backward pass of `layers` over a tape from mlp_forward, from g = ∂loss/∂output
// [batch, out_last]: writes the gradients dest[i] asks for, and dx = ∂loss/∂x
// [batch, in0] when dx is non-null. With an update (kind != None), each layer's
// parameters are updated as soon as its gradients are final (the update requires
// every dest to be the layer's own dW/db, overwritten). The same kernels in the same
// order as the eager LinearBackward and dropout nodes.
void mlp_backward(const std::vector<MlpLayer>& layers, bool bf16, const MlpTape& t, MlpScratch& s, const float* g,
                  const MlpGradDest* dest, float* dx, const MlpUpdate& update = MlpUpdate{}) {
  const KernelTable& k = kernels();
  const GemmFn gemm = bf16 ? k.gemm_bf16 : k.gemm;
  const index_t batch = t.batch;
  const size_t last = layers.size() - 1;
  if (layers[last].dropout > 0.0f) {
    const MlpLayer& L = layers[last];
    float* gd = s.grad[last].data();
    k.dropout_backward(gd, g, t.mask[last].data(), batch * L.out, L.dropout, false);
    g = gd;
  }
  for (size_t ii = layers.size(); ii-- > 0;) {
    const MlpLayer& L = layers[ii];
    const MlpGradDest& D = dest[ii];
    const index_t cells = batch * L.out;
    const float* dz = g;
    if (L.act != Act::Identity) {
      const float* saved = act_backward_needs_input(L.act) ? t.z[ii].data()
                           : (ii == last && L.dropout == 0.0f) ? t.output : t.y[ii].data();
      k.act_backward(s.dz.data(), g, saved, cells, L.act, L.act_param, false);
      dz = s.dz.data();
    }
    float* gp = ii > 0 ? s.grad[ii - 1].data() : nullptr;
    if (plain_sgd(update) && D.dW && !D.acc_w) {
      // Plain SGD: the input gradient first (the last read of W), then the weight
      // gradient, whose GEMM steps W as it stores each tile of dW, then the bias.
      if (D.db) k.colsum(D.db, dz, batch, L.out, L.out, D.acc_b);
      input_gradient(k, gemm, layers, t, ii, dz, gp, dx);
      const GemmEpilogue ep = GemmEpilogue::with_sgd_step(update.param + (L.W - update.param), L.in, update.sgd.lr,
                                                          update.keep_weight_grads);
      gemm(D.dW, L.in, dz, L.out, t.inputs[ii], L.in, L.out, L.in, batch, true, false, 1.0f, 0.0f, ep);
      update_bias(k, update, L);
      g = gp;
      continue;
    }
    if (ii == 0 && !dx) {
      const int nt = rows_threads(L, batch, update);
      if (nt > 1) {
        if (D.db) k.colsum(D.db, dz, batch, L.out, L.out, false);
        grad_and_update_rows(k, gemm, update, L, dz, t.inputs[0], batch, nt);
        break;
      }
    }
    if (D.dW)
      gemm(D.dW, L.in, dz, L.out, t.inputs[ii], L.in, L.out, L.in, batch, true, false, 1.0f, D.acc_w ? 1.0f : 0.0f,
             GemmEpilogue{});
    if (D.db) k.colsum(D.db, dz, batch, L.out, L.out, D.acc_b);
    input_gradient(k, gemm, layers, t, ii, dz, gp, dx);
    if (update.kind != MlpUpdate::Kind::None) update_rows(k, update, L, 0, L.out);  // W is not read again
    g = gp;
  }
}

std::atomic<std::uint64_t> next_program_id{1};

}  // namespace

MlpProgram::MlpProgram(std::vector<MlpLayer> layers, bool bf16)
    : layers_(std::move(layers)), dropouts_(count_dropout(layers_)), bf16_(bf16), id_(next_program_id++) {
  dest_.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) dest_[i] = MlpGradDest{layers_[i].dW, layers_[i].db, false, false};
}

void MlpProgram::forward(MlpTape& tape, const float* x, index_t batch, const std::uint64_t* seeds,
                         const std::uint64_t* offsets, float* out) const {
  size_tape(tape, layers_, batch);
  tape.program = id_;
  mlp_forward(layers_, bf16_, tape, x, batch, seeds, offsets, out);
}

void MlpProgram::backward(const MlpTape& tape, const float* g, const MlpGradDest* dest, float* dx) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_scratch(scratch_, layers_, tape.batch);
  mlp_backward(layers_, bf16_, tape, scratch_, g, dest, dx);
}

MlpStepResult MlpProgram::train_step(const float* x, const std::int64_t* labels, index_t batch,
                                     const std::uint64_t* seeds, const std::uint64_t* offsets,
                                     const MlpLoss& loss, const MlpUpdate& update) {
  std::lock_guard<std::mutex> lock(mutex_);
  const KernelTable& k = kernels();
  const index_t classes = layers_.back().out;
  size_tape(step_tape_, layers_, batch);
  size_scratch(scratch_, layers_, batch);
  const size_t cells = static_cast<size_t>(batch) * static_cast<size_t>(classes);
  if (dlogits_.size() < cells) dlogits_.resize(cells);
  mlp_forward(layers_, bf16_, step_tape_, x, batch, seeds, offsets);
  const float* logits = step_tape_.output;
  const LossSums sums = k.softmax_xent(dlogits_.data(), nullptr, logits, labels, loss.class_weight, batch, classes,
                                       loss.ignore_index, loss.label_smoothing, 1.0f, true);
  MlpStepResult result;
  result.loss = sums.weight_sum != 0.0 ? sums.loss_sum / sums.weight_sum
                                       : std::numeric_limits<double>::quiet_NaN();
  result.correct = 0;
  for (index_t r = 0; r < batch; ++r) {
    const float* row = logits + r * classes;
    index_t best = 0;
    for (index_t c = 1; c < classes; ++c)
      if (row[c] > row[best]) best = c;
    result.correct += best == labels[r];
  }
  mlp_backward(layers_, bf16_, step_tape_, scratch_, dlogits_.data(), dest_.data(), nullptr, update);
  return result;
}

}  // namespace fastmlp::cpu
