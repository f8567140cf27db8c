// Forward + softmax cross-entropy + backward of a Linear/activation/Dropout MLP in one
// native call, with every intermediate buffer allocated once and reused across steps.
// It issues exactly the kernel calls the eager (autograd) path issues for the same
// model, in the same order, so the gradients it writes are bitwise the eager ones.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/kernels.h"

namespace fastmlp::cpu {

struct MlpLayer {
  const float* W = nullptr;  // [out, in]
  const float* b = nullptr;  // [out] or null
  float* dW = nullptr;       // [out, in], overwritten each step
  float* db = nullptr;       // [out] or null
  index_t in = 0, out = 0;
  Act act = Act::Identity;   // fused into the Linear's GEMM epilogue
  float act_param = 0.0f;
  float dropout = 0.0f;      // applied after the activation (0: none)
};

struct MlpLoss {
  const float* class_weight = nullptr;  // [classes] or null
  std::int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
};

// An optimizer update applied inside the step, layer by layer as soon as a layer's
// gradients are final (after its input gradient is computed, the last use of its
// weights). The layers' W, b, dW and db point into the flat `param` and `grad`
// buffers (the optimizer's, see fastmlp/optim/optimizer.py), and each state buffer
// has the same layout. Adam/SGD are elementwise, so this gives bitwise the result
// of one update over the whole flat buffer after the backward pass.
struct MlpUpdate {
  enum class Kind { None, Sgd, Adam };
  Kind kind = Kind::None;
  float* param = nullptr;
  float* grad = nullptr;
  float* state[3] = {nullptr, nullptr, nullptr};  // SGD: momentum (or null); Adam: m, v, vmax (or null)
  SgdOptions sgd{};
  AdamOptions adam{};
};

struct MlpStepResult {
  double loss;          // mean loss (weighted mean with class weights)
  std::int64_t correct; // rows whose argmax equals the label
};

class MlpStepper {
 public:
  MlpStepper(std::vector<MlpLayer> layers, index_t max_batch);

  // One step on x [batch, in0] with labels [batch]; dropout layer j (in order) uses
  // Philox stream (seeds[j], offsets[j]). Writes dW/db of every layer.
  // With an update (kind != None), also applies it to every layer's parameters.
  MlpStepResult train_step(const float* x, const std::int64_t* labels, index_t batch,
                           const std::uint64_t* seeds, const std::uint64_t* offsets, const MlpLoss& loss,
                           const MlpUpdate& update = MlpUpdate{});

  index_t max_batch() const { return max_batch_; }
  const std::vector<MlpLayer>& layers() const { return layers_; }
  int dropout_layers() const;

 private:
  std::vector<MlpLayer> layers_;
  index_t max_batch_;
  // Per layer: activation output y, pre-activation z (when the backward needs it),
  // post-dropout output and mask (when it has dropout), and a gradient buffer.
  std::vector<std::vector<float>> y_, z_, dropped_, grad_;
  std::vector<std::vector<std::uint8_t>> mask_;
  std::vector<float> dlogits_, dz_;
};

}  // namespace fastmlp::cpu
