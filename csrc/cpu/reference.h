// Naive reference kernels (see reference.cpp): one per KernelTable entry.
#pragma once

#include "cpu/kernels.h"

namespace fastmlp::cpu::ref {

void gemm(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
          index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
          const GemmEpilogue& ep);
void gemm_bf16(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
               index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
               const GemmEpilogue& ep);
void f32_to_bf16(std::uint16_t* dst, const float* src, index_t n);
void bf16_to_f32(float* dst, const std::uint16_t* src, index_t n);
void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log);
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                      bool log);
LossSums softmax_xent(float* dlogits, float* row_loss, const float* logits,
                      const std::int64_t* labels, const float* class_weight, index_t rows,
                      index_t cols, std::int64_t ignore_index, float label_smoothing,
                      float grad_scale, bool divide_by_weight_sum);
LossSums nll(float* dlogp, float* row_loss, const float* logp, const std::int64_t* labels,
             const float* class_weight, index_t rows, index_t cols, std::int64_t ignore_index,
             float grad_scale, bool divide_by_weight_sum);
double pointwise_loss(float* dinput, float* elem_loss, const float* input, const float* target,
                      const float* weight, index_t n, PointwiseLoss kind, float grad_scale);
void colsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate);
void rowsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate);
void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset);
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p,
                      bool accumulate);
void sgd_step(float* const* params, float* const* momentum_bufs, const float* const* grads,
              const index_t* sizes, index_t count, const SgdOptions& o);
void adam_step(float* const* params, float* const* exp_avgs, float* const* exp_avg_sqs,
               float* const* max_exp_avg_sqs, const float* const* grads, const index_t* sizes,
               index_t count, const AdamOptions& o);

void fill_reference(KernelTable& t);

}  // namespace fastmlp::cpu::ref
