#include "cpu/mlp_step.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <limits>

namespace fastmlp::cpu {

namespace {

// Grows v to hold [rows, cols] (buffers only grow).
template <class T>
void grow(std::vector<T>& v, index_t rows, index_t cols) {
  const size_t cells = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (v.size() < cells) v.resize(cells);
}

// forward:  h_{i+1} = drop(act(h_i·W_iᵀ + b_i))      logits = h_L·W_Lᵀ + b_L
// loss:     softmax cross-entropy, mean over the batch, gradient dlogits in the same pass
// backward: dz = g·act'(·) (g after the dropout mask); dW_i = dzᵀ·h_i; db_i = Σ dz; g = dz·W_i

// The optimizer update of rows [r0, r1) of one layer's weight (unless `weight` is false:
// the weight gradient's GEMM has stepped it) and of the same entries of its bias (see MlpUpdate).
void update_rows(const KernelTable& k, const MlpUpdate& u, const MlpLayer& L, index_t r0, index_t r1,
                 bool weight = true) {
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
  if (weight) add(L.W + r0 * L.in, (r1 - r0) * L.in);
  if (L.b) add(L.b + r0, r1 - r0);
  if (count == 0) return;
  if (u.kind == MlpUpdate::Kind::Adam)
    k.adam_step(params, states[0], states[1], u.state[2] ? states[2] : nullptr, grads, sizes, count, u.adam);
  else
    k.sgd_step(params, u.state[0] ? states[0] : nullptr, grads, sizes, count, u.sgd);
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
  const int nt = by_work < 2.0 ? 1 : (by_work < avail ? static_cast<int>(by_work) : avail);
  return static_cast<int>(std::min<index_t>(nt, L.out));
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
  float* out = ii > 0 ? gp : dx;  // [batch, L.in]: the previous layer has L.in outputs
  if (!out) return;
  gemm(out, L.in, dz, L.out, L.W, L.in, t.batch, L.in, L.out, false, false, 1.0f, 0.0f, GemmEpilogue{});
  const float p = ii > 0 ? layers[ii - 1].dropout : 0.0f;
  if (p > 0.0f) k.dropout_backward(gp, gp, t.mask[ii - 1].data(), t.batch * L.in, p, false);
}

// The backward pass of `layers` over a tape from their forward, from g = ∂loss/∂output
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
  // A plain SGD step (no momentum, weight decay or maximize), which the weight gradient's GEMM
  // can apply itself (GemmEpilogue::Kind::SgdStep).
  const bool plain_sgd = update.kind == MlpUpdate::Kind::Sgd && update.sgd.momentum == 0.0f &&
                         update.sgd.weight_decay == 0.0f && !update.sgd.maximize;
  // s.grad[i] for i < last: the gradient w.r.t. layer i's output; s.grad[last]: the gradient
  // through the last layer's dropout, when it has one.
  s.grad.resize(layers.size());
  if (layers[last].dropout > 0.0f) {
    grow(s.grad[last], batch, layers[last].out);
    k.dropout_backward(s.grad[last].data(), g, t.mask[last].data(), batch * layers[last].out, layers[last].dropout,
                       false);
    g = s.grad[last].data();
  }
  for (size_t ii = layers.size(); ii-- > 0;) {
    const MlpLayer& L = layers[ii];
    const MlpGradDest& D = dest[ii];
    const float* dz = g;
    if (L.act != Act::Identity) {
      grow(s.dz, batch, L.out);
      const float* saved = act_backward_needs_input(L.act) ? t.z[ii].data()
                           : (ii == last && L.dropout == 0.0f) ? t.output : t.y[ii].data();
      k.act_backward(s.dz.data(), g, saved, batch * L.out, L.act, L.act_param, false);
      dz = s.dz.data();
    }
    if (ii > 0) grow(s.grad[ii - 1], batch, L.in);
    float* gp = ii > 0 ? s.grad[ii - 1].data() : nullptr;
    // Plain SGD: the weight gradient's GEMM steps W as it stores each tile of dW, so it runs
    // after the input gradient (the last read of W); the bias is stepped after it.
    const bool sgd_in_gemm = plain_sgd && D.dW && !D.acc_w;
    // Else with no dx, the first layer's dW and update may be split by rows over threads.
    const int nt = ii == 0 && !dx && !sgd_in_gemm ? rows_threads(L, batch, update) : 1;
    if (D.dW && !sgd_in_gemm && nt == 1)
      gemm(D.dW, L.in, dz, L.out, t.inputs[ii], L.in, L.out, L.in, batch, true, false, 1.0f, D.acc_w ? 1.0f : 0.0f,
           GemmEpilogue{});
    if (D.db) k.colsum(D.db, dz, batch, L.out, L.out, D.acc_b);
    if (nt > 1) {  // (the bias gradient is final)
      grad_and_update_rows(k, gemm, update, L, dz, t.inputs[0], batch, nt);
      break;
    }
    input_gradient(k, gemm, layers, t, ii, dz, gp, dx);
    if (sgd_in_gemm)
      gemm(D.dW, L.in, dz, L.out, t.inputs[ii], L.in, L.out, L.in, batch, true, false, 1.0f, 0.0f,
           GemmEpilogue::with_sgd_step(update.param + (L.W - update.param), L.in, update.sgd.lr,
                                       update.keep_weight_grads));
    if (update.kind != MlpUpdate::Kind::None) update_rows(k, update, L, 0, L.out, !sgd_in_gemm);  // W is not read again
    g = gp;
  }
}

std::atomic<std::uint64_t> next_program_id{1};

}  // namespace

MlpProgram::MlpProgram(std::vector<MlpLayer> layers, bool bf16)
    : layers_(std::move(layers)), bf16_(bf16), id_(next_program_id++) {
  for (const MlpLayer& L : layers_) {
    dropouts_ += L.dropout > 0.0f;
    dest_.push_back(MlpGradDest{L.dW, L.db, false, false});
  }
}

// The same kernels in the same order as the eager Linear/activation/Dropout modules.
void MlpProgram::forward(MlpTape& t, const float* x, index_t batch, const std::uint64_t* seeds,
                         const std::uint64_t* offsets, float* out) const {
  const KernelTable& k = kernels();
  const GemmFn gemm = bf16_ ? k.gemm_bf16 : k.gemm;
  const size_t n = layers_.size();
  for (auto* v : {&t.y, &t.z, &t.dropped}) v->resize(n);
  t.mask.resize(n);
  t.inputs.resize(n);
  t.batch = batch;
  t.program = id_;
  const float* h = x;
  for (size_t i = 0; i < n; ++i) {
    const MlpLayer& L = layers_[i];
    t.inputs[i] = h;
    const bool last = i + 1 == n;
    const bool keep_z = act_backward_needs_input(L.act);
    grow(t.y[i], batch, L.out);
    if (keep_z) grow(t.z[i], batch, L.out);
    const GemmEpilogue ep =
        GemmEpilogue::with_bias_act(L.b, L.act, L.act_param, keep_z ? t.z[i].data() : nullptr, keep_z ? L.out : 0);
    float* y = last && out && L.dropout == 0.0f ? out : t.y[i].data();
    gemm(y, L.out, h, L.in, L.W, L.in, batch, L.out, L.in, false, true, 1.0f, 0.0f, ep);
    h = y;
    if (L.dropout > 0.0f) {
      grow(t.dropped[i], batch, L.out);
      grow(t.mask[i], batch, L.out);
      float* d = last && out ? out : t.dropped[i].data();
      k.dropout_forward(d, t.mask[i].data(), y, batch * L.out, L.dropout, *seeds++, *offsets++);  // (in order)
      h = d;
    }
  }
  t.output = h;
}

void MlpProgram::backward(const MlpTape& tape, const float* g, const MlpGradDest* dest, float* dx) {
  std::lock_guard<std::mutex> lock(mutex_);
  mlp_backward(layers_, bf16_, tape, scratch_, g, dest, dx);
}

MlpStepResult MlpProgram::train_step(const float* x, const std::int64_t* labels, index_t batch,
                                     const std::uint64_t* seeds, const std::uint64_t* offsets,
                                     const MlpLoss& loss, const MlpUpdate& update) {
  std::lock_guard<std::mutex> lock(mutex_);
  const index_t classes = layers_.back().out;
  grow(dlogits_, batch, classes);
  forward(step_tape_, x, batch, seeds, offsets, nullptr);
  const float* logits = step_tape_.output;
  const LossSums sums = kernels().softmax_xent(dlogits_.data(), nullptr, logits, labels, loss.class_weight, batch,
                                               classes, loss.ignore_index, loss.label_smoothing, 1.0f, true);
  MlpStepResult result{sums.weight_sum != 0.0 ? sums.loss_sum / sums.weight_sum
                                              : std::numeric_limits<double>::quiet_NaN(), 0};
  for (index_t r = 0; r < batch; ++r) {
    const float* row = logits + r * classes;
    result.correct += std::max_element(row, row + classes) - row == labels[r];  // (the first of equal maxima)
  }
  mlp_backward(layers_, bf16_, step_tape_, scratch_, dlogits_.data(), dest_.data(), nullptr, update);
  return result;
}

}  // namespace fastmlp::cpu
