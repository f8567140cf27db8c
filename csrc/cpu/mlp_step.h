// Forward + softmax cross-entropy + backward of a Linear/activation/Dropout MLP in one
// native call, with every intermediate buffer allocated once and reused across steps.
// It issues exactly the kernel calls the eager (autograd) path issues for the same
// model, in the same order, so the gradients it writes are bitwise the eager ones.
#pragma once

#include <cstdint>
#include <mutex>
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
// of one update over the whole flat buffer after the backward pass. A plain SGD step
// (no momentum, weight decay or maximize) on a weight is taken by the weight
// gradient's GEMM itself, tile by tile as dW is stored (GemmEpilogue::Kind::SgdStep), with
// the same rounding as the optimizer's kernel.
struct MlpUpdate {
  enum class Kind { None, Sgd, Adam };
  Kind kind = Kind::None;
  float* param = nullptr;
  float* grad = nullptr;
  float* state[3] = {nullptr, nullptr, nullptr};  // SGD: momentum (or null); Adam: m, v, vmax (or null)
  SgdOptions sgd{};
  AdamOptions adam{};
  // False when no one reads this step's weight gradients (a step of a run whose
  // gradients are overwritten by the next): a plain SGD step may then leave dW
  // unwritten (GemmEpilogue::SgdStep::keep_c). The parameters are updated all the same.
  bool keep_weight_grads = true;
};

struct MlpStepResult {
  double loss;          // mean loss (weighted mean with class weights)
  std::int64_t correct; // rows whose argmax equals the label
};

// What one forward pass saves for its backward pass: per layer the activation output
// y, the pre-activation z (when the activation's backward needs it), and the output
// after dropout with its mask (when the layer has dropout), sized for `batch` rows.
// Buffers only grow, so a tape reused across passes allocates nothing.
struct MlpTape {
  std::vector<std::vector<float>> y, z, dropped;
  std::vector<std::vector<std::uint8_t>> mask;
  std::vector<const float*> inputs;  // each layer's input: x, then the previous layer's (dropped) output
  const float* output = nullptr;     // the last layer's output
  index_t batch = 0;
  std::uint64_t program = 0;         // the id of the MlpProgram whose forward filled it (0: none)
};

// Where the backward pass writes one layer's gradients: dW [out, in] and db [out]
// (either may be null: not wanted), each overwritten or, with acc_*, added to.
struct MlpGradDest {
  float* dW = nullptr;
  float* db = nullptr;
  bool acc_w = false, acc_b = false;
};

// Scratch of the backward pass (gradients flowing between layers), reused across passes.
struct MlpScratch {
  std::vector<std::vector<float>> grad;
  std::vector<float> dz;
};

// One MLP program: the Linear/activation/Dropout layers of a Sequential, run
//  - eagerly, for model(x) and the loss.backward() that follows: forward() into a tape
//    the caller keeps (one per forward pass whose backward is still to come), and
//    backward() from that tape into the gradient destinations it is given;
//  - as whole training steps: train_step() runs forward, softmax cross-entropy, backward
//    into the layers' own dW/db and, with an update, the optimizer step, over a tape and
//    scratch of its own.
// Every buffer only grows, so passes over batches no larger than earlier ones allocate
// nothing. Each program has an id, unique in the process, that its tapes record: a tape
// is only accepted by the program whose forward filled it.
class MlpProgram {
 public:
  // bf16: every product runs on the bfloat16 GEMM (KernelTable::gemm_bf16: operands rounded to
  // bfloat16 in its packing, float32 accumulation), as under fastmlp.autocast.
  explicit MlpProgram(std::vector<MlpLayer> layers, bool bf16 = false);

  // The forward pass on x [batch, in0] into `tape`; dropout layer j (in order) uses Philox
  // stream (seeds[j], offsets[j]). With `out` non-null the last layer writes its output there.
  void forward(MlpTape& tape, const float* x, index_t batch, const std::uint64_t* seeds,
               const std::uint64_t* offsets, float* out) const;
  // Over a tape this program's forward filled; may run on several threads at once.
  void backward(const MlpTape& tape, const float* g, const MlpGradDest* dest, float* dx);

  // One step on x [batch, in0] with labels [batch]; dropout layer j (in order) uses
  // Philox stream (seeds[j], offsets[j]). Writes dW/db of every layer (but for the
  // weights' dW under a plain SGD update with keep_weight_grads false). With an update
  // (kind != None), also applies it to every layer's parameters. Needs every layer's dW.
  MlpStepResult train_step(const float* x, const std::int64_t* labels, index_t batch,
                           const std::uint64_t* seeds, const std::uint64_t* offsets, const MlpLoss& loss,
                           const MlpUpdate& update = MlpUpdate{});

  const std::vector<MlpLayer>& layers() const { return layers_; }
  int dropout_layers() const { return dropouts_; }
  bool bf16() const { return bf16_; }
  std::uint64_t id() const { return id_; }

 private:
  std::vector<MlpLayer> layers_;
  int dropouts_ = 0;
  bool bf16_;
  std::uint64_t id_;
  std::mutex mutex_;  // guards everything below
  MlpScratch scratch_;
  MlpTape step_tape_;
  std::vector<MlpGradDest> dest_;
  std::vector<float> dlogits_;
};

}  // namespace fastmlp::cpu
