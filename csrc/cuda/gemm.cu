// GEMM entry point: chooses a variant and a split of K for the shape and the device,
// launches it, and (for split-K) adds the splits and applies the epilogue.
//
// Choice (gemm_plan): batches of up to 32 rows take the 16x64 SIMT kernel; with
// allow_tf32 on an sm_80+ device larger problems take the TF32 tensor-core kernel;
// otherwise the 128x128 SIMT kernel when its tiles fill every SM, else 64x64. When
// the tiles still leave SMs idle, K is split so that about two blocks per SM run;
// each split writes a partial product to the workspace and splitk_reduce_kernel
// sums the splits in order (so results do not depend on timing), then applies
// alpha, beta, bias, preact and the activation.
#include <map>
#include <mutex>

#include "cuda/gemm_impl.cuh"

namespace fastmlp::cuda {

using gemm_detail::GemmArgs;

namespace {

struct DeviceInfo {
  int sms = 1;
  int major = 0;
};

// SM count and compute capability of the current device, queried once per device.
DeviceInfo current_device_info() {
  int dev = 0;
  FASTMLP_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::map<int, DeviceInfo> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  DeviceInfo info;
  FASTMLP_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev));
  FASTMLP_CUDA_CHECK(cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, dev));
  cache[dev] = info;
  return info;
}

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// C = epilogue(Σ_s partial[s]) for every element, the splits added in order.
__global__ void splitk_reduce_kernel(const GemmArgs g, int splits) {
  const index_t mn = g.M * g.N;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < mn; i += stride) {
    float s = 0.0f;
    for (int k = 0; k < splits; ++k) s += g.partial[k * mn + i];
    const index_t m = i / g.N;
    gemm_detail::store_output(g, m, i - m * g.N, s);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

}  // namespace

const char* gemm_algo_name(GemmAlgo algo) {
  switch (algo) {
    case GemmAlgo::Auto: return "auto";
    case GemmAlgo::Simt128x128: return "simt128x128";
    case GemmAlgo::Simt64x64: return "simt64x64";
    case GemmAlgo::Simt16x64: return "simt16x64";
    case GemmAlgo::Tf32: return "tf32";
  }
  return "?";
}

GemmPlan gemm_plan(index_t M, index_t N, index_t K, bool allow_tf32, GemmAlgo algo, int splits) {
  const DeviceInfo dev = current_device_info();
  GemmPlan plan;
  if (algo == GemmAlgo::Tf32 && dev.major < 8)
    throw std::invalid_argument("gemm: the TF32 kernel needs a device of compute capability 8.0 or newer");
  if (algo != GemmAlgo::Auto) {
    plan.algo = algo;
  } else if (M <= 32) {
    plan.algo = GemmAlgo::Simt16x64;
  } else if (allow_tf32 && dev.major >= 8) {
    plan.algo = GemmAlgo::Tf32;
  } else if (ceil_div(M, 128) * ceil_div(N, 128) >= dev.sms) {
    plan.algo = GemmAlgo::Simt128x128;
  } else {
    plan.algo = GemmAlgo::Simt64x64;
  }
  const gemm_detail::TileShape ts = gemm_detail::tile_shape(plan.algo);
  const index_t tiles = ceil_div(M, ts.bm) * ceil_div(N, ts.bn);
  index_t want = splits;
  if (want <= 0) {
    // About two blocks per SM, each split at least 64 values of k, at most 32 splits.
    const index_t target = 2 * static_cast<index_t>(dev.sms);
    want = tiles >= dev.sms || tiles == 0 ? 1 : ceil_div(target, tiles);
    const index_t by_k = K / 64;
    if (want > by_k) want = by_k;
    if (want > 32) want = 32;
  }
  if (want < 1 || K <= ts.bk) want = 1;
  if (want == 1) {
    plan.splits = 1;
    plan.k_chunk = K;
  } else {
    plan.k_chunk = ceil_div(ceil_div(K, want), ts.bk) * ts.bk;
    plan.splits = static_cast<int>(ceil_div(K, plan.k_chunk));  // every split non-empty
    if (plan.splits == 1) plan.k_chunk = K;
  }
  return plan;
}

index_t gemm_workspace_floats(const GemmPlan& plan, index_t M, index_t N) {
  return plan.splits > 1 ? static_cast<index_t>(plan.splits) * M * N : 0;
}

// C[M,N] = act(alpha·op(A)·op(B) + beta·C + bias)
void gemm(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb, index_t M, index_t N,
          index_t K, bool trans_a, bool trans_b, float alpha, float beta, const GemmEpilogue& ep,
          const GemmPlan& plan, float* workspace, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const gemm_detail::TileShape ts = gemm_detail::tile_shape(plan.algo);
  const index_t tiles = ceil_div(M, ts.bm) * ceil_div(N, ts.bn);
  if (tiles > 0x7fffffff) throw std::invalid_argument("gemm: the matrices are too large for one launch");
  const bool split = plan.splits > 1;
  if (split && (workspace == nullptr || !aligned16(workspace) || plan.k_chunk % ts.bk != 0 ||
                static_cast<index_t>(plan.splits - 1) * plan.k_chunk >= K || plan.splits > 65535))
    throw std::logic_error("gemm: inconsistent split-K plan or workspace");

  GemmArgs g;
  g.C = C;
  g.A = A;
  g.B = B;
  g.ldc = ldc;
  g.lda = lda;
  g.ldb = ldb;
  g.M = M;
  g.N = N;
  g.K = K;
  g.alpha = alpha;
  g.beta = beta;
  g.bias = ep.bias;
  g.preact = ep.preact;
  g.ldz = ep.ldz;
  g.act = ep.act;
  g.act_param = ep.act_param;
  g.partial = split ? workspace : nullptr;
  g.k_chunk = split ? plan.k_chunk : K;
  g.vec_a = aligned16(A) && lda % 4 == 0;
  g.vec_b = aligned16(B) && ldb % 4 == 0;

  const int splits = split ? plan.splits : 1;
  if (plan.algo == GemmAlgo::Tf32) gemm_detail::launch_tf32(trans_a, trans_b, g, splits, stream);
  else gemm_detail::launch_simt(plan.algo, trans_a, trans_b, g, splits, stream);

  if (split) {
    constexpr int kThreads = 256;
    splitk_reduce_kernel<<<blocks_for(M * N, kThreads, 1 << 16), kThreads, 0, stream>>>(g, splits);
    FASTMLP_CUDA_CHECK_LAUNCH("splitk_reduce_kernel");
  }
}

}  // namespace fastmlp::cuda
