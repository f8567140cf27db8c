#include "cpu/mlp_step.h"

#include <algorithm>
#include <cstddef>
#include <limits>

namespace fastmlp::cpu {

MlpStepper::MlpStepper(std::vector<MlpLayer> layers, index_t max_batch)
    : layers_(std::move(layers)), max_batch_(max_batch) {
  const size_t n = layers_.size();
  y_.resize(n);
  z_.resize(n);
  dropped_.resize(n);
  grad_.resize(n);
  mask_.resize(n);
  index_t widest = 1;
  for (size_t i = 0; i < n; ++i) {
    const MlpLayer& L = layers_[i];
    const size_t cells = static_cast<size_t>(max_batch) * static_cast<size_t>(L.out);
    y_[i].resize(cells);
    if (act_backward_needs_input(L.act)) z_[i].resize(cells);
    if (L.dropout > 0.0f) {
      dropped_[i].resize(cells);
      mask_[i].resize(cells);
    }
    grad_[i].resize(cells);
    widest = std::max(widest, L.out);
  }
  dlogits_.resize(static_cast<size_t>(max_batch) * static_cast<size_t>(layers_.back().out));
  dz_.resize(static_cast<size_t>(max_batch) * static_cast<size_t>(widest));
}

int MlpStepper::dropout_layers() const {
  int n = 0;
  for (const MlpLayer& L : layers_) n += L.dropout > 0.0f;
  return n;
}

// forward:  h_{i+1} = drop(act(h_i·W_iᵀ + b_i))      logits = h_L·W_Lᵀ + b_L
// loss:     softmax cross-entropy, mean over the batch, gradient dlogits in the same pass
// backward: dz = g·act'(·) (g after the dropout mask); dW_i = dzᵀ·h_i; db_i = Σ dz; g = dz·W_i
namespace {

// The optimizer update of one layer's weight and bias (see MlpUpdate).
void update_layer(const KernelTable& k, const MlpUpdate& u, const MlpLayer& L) {
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
  add(L.W, L.out * L.in);
  if (L.b) add(L.b, L.out);
  if (u.kind == MlpUpdate::Kind::Adam)
    k.adam_step(params, states[0], states[1], u.state[2] ? states[2] : nullptr, grads, sizes, count, u.adam);
  else
    k.sgd_step(params, u.state[0] ? states[0] : nullptr, grads, sizes, count, u.sgd);
}

}  // namespace

MlpStepResult MlpStepper::train_step(const float* x, const std::int64_t* labels, index_t batch,
                                     const std::uint64_t* seeds, const std::uint64_t* offsets,
                                     const MlpLoss& loss, const MlpUpdate& update) {
  const KernelTable& k = kernels();
  const size_t n = layers_.size();
  std::vector<const float*> inputs(n);
  const float* h = x;
  int dj = 0;
  for (size_t i = 0; i < n; ++i) {
    const MlpLayer& L = layers_[i];
    inputs[i] = h;
    GemmEpilogue ep;
    ep.bias = L.b;
    ep.act = L.act;
    ep.act_param = L.act_param;
    if (!z_[i].empty()) {
      ep.preact = z_[i].data();
      ep.ldz = L.out;
    }
    float* y = y_[i].data();
    k.gemm(y, L.out, h, L.in, L.W, L.in, batch, L.out, L.in, false, true, 1.0f, 0.0f, ep);
    h = y;
    if (L.dropout > 0.0f) {
      k.dropout_forward(dropped_[i].data(), mask_[i].data(), y, batch * L.out, L.dropout, seeds[dj], offsets[dj]);
      ++dj;
      h = dropped_[i].data();
    }
  }
  const MlpLayer& last = layers_.back();
  const index_t classes = last.out;
  const float* logits = h;
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

  const float* g = dlogits_.data();
  for (size_t ii = n; ii-- > 0;) {
    const MlpLayer& L = layers_[ii];
    const index_t cells = batch * L.out;
    const float* dz = g;
    if (L.act != Act::Identity) {
      const float* saved = act_backward_needs_input(L.act) ? z_[ii].data() : y_[ii].data();
      k.act_backward(dz_.data(), g, saved, cells, L.act, L.act_param, false);
      dz = dz_.data();
    }
    k.gemm(L.dW, L.in, dz, L.out, inputs[ii], L.in, L.out, L.in, batch, true, false, 1.0f, 0.0f, GemmEpilogue{});
    if (L.db) k.colsum(L.db, dz, batch, L.out, L.out, false);
    float* gp = nullptr;
    if (ii > 0) {
      // gradient w.r.t. this layer's input = the previous layer's (dropped) output
      const MlpLayer& P = layers_[ii - 1];
      gp = grad_[ii - 1].data();
      k.gemm(gp, P.out, dz, L.out, L.W, L.in, batch, L.in, L.out, false, false, 1.0f, 0.0f, GemmEpilogue{});
      if (P.dropout > 0.0f) k.dropout_backward(gp, gp, mask_[ii - 1].data(), batch * P.out, P.dropout, false);
    }
    if (update.kind != MlpUpdate::Kind::None) update_layer(k, update, L);  // W is not read again
    g = gp;
  }
  return result;
}

}  // namespace fastmlp::cpu
