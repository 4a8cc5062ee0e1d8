// CUDA twins of dp_cpu.cpp: the same per-target rules (dp.h), one thread per (group, target).
// The work per level is tiny (G x (N+1) targets); these kernels exist so that a search on the GPU
// never copies its cost matrices to the host.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "dp.h"

namespace oss_fast {
namespace cuda {

namespace {

constexpr int kThreads = 256;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("oss_fast CUDA error in ") + what + ": " +
                             cudaGetErrorString(err));
}

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void reduce_kernel(const double* costs, const int64_t* cand, int64_t G, int64_t M,
                              int64_t J, double* min_out, int64_t* arg_out) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= G * J) return;
  const int64_t g = t / J, j = t % J;
  reduce_target(costs + g * M * J, cand + g * M, M, J, j, min_out + t, arg_out + t);
}

__global__ void update_kernel(int mode, const double* min_in, const int64_t* arg_in, double* best,
                              int64_t* from, uint8_t* improved, int64_t G, int64_t J, int64_t K,
                              int64_t k) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= G * J) return;
  const int64_t g = t / J, j = t % J;
  int64_t* from_k = from + (g * (K + 1) + k) * J;
  improved[t] = update_target(mode, min_in[t], arg_in[t], best + t, from_k + j);
  if (mode == kCompat && k + 1 <= K) from_k[J + j] = from_k[j];
}

__global__ void traceback_kernel(const int64_t* from, int64_t G, int64_t K, int64_t J,
                                 int64_t* path) {
  const int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (g < G) traceback_group(from + g * (K + 1) * J, K, J, path + g * K);
}

// One block per group; levels run one after another with the block's threads over targets.
// work holds per group 2*J values and (K+1)*J predecessors.
__global__ void kstep_kernel(const double* cost, int64_t G, int64_t J, int64_t K, int objective,
                             double* work_values, int64_t* work_from, int64_t* path,
                             double* value) {
  const int64_t g = blockIdx.x;
  const double* cost_g = cost + g * J * J;
  double* prev = work_values + g * 2 * J;
  double* cur = prev + J;
  int64_t* from = work_from + g * (K + 1) * J;
  const int64_t N = J - 1;
  for (int64_t j = threadIdx.x; j < J; j += blockDim.x) {
    prev[j] = j < N ? first_jump_value(cost_g[N * J + j]) : HUGE_VAL;
    from[j] = j < N ? N : -1;
  }
  __syncthreads();
  for (int64_t k = 1; k < K; ++k) {
    for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
      kstep_target(cost_g, prev, J, j, objective, &cur[j], &from[k * J + j]);
    __syncthreads();
    double* swap = prev;
    prev = cur;
    cur = swap;
  }
  if (threadIdx.x == 0) {
    if (prev[0] < HUGE_VAL) {
      traceback_group(from, K, J, path + g * K);
      value[g] = prev[0];
    } else {
      for (int64_t k = 0; k < K; ++k) path[g * K + k] = -1;
      value[g] = HUGE_VAL;
    }
  }
}

// Rank selection by counting: position k's value of rank r is the v with
// #(< v) <= r < #(<= v). O(S^2) per position, fine for the few hundred samples of a search.
__device__ int64_t select_rank(const int64_t* steps, int64_t S, int64_t K, int64_t k, int64_t r) {
  for (int64_t a = 0; a < S; ++a) {
    const int64_t v = steps[a * K + k];
    int64_t less = 0, less_eq = 0;
    for (int64_t b = 0; b < S; ++b) {
      const int64_t w = steps[b * K + k];
      less += w < v;
      less_eq += w <= v;
    }
    if (less <= r && r < less_eq) return v;
  }
  return -1;
}

__global__ void median_kernel(const int64_t* steps, int64_t S, int64_t K, int64_t* out) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= K) return;
  out[k] = floor_midpoint(select_rank(steps, S, K, k, S / 2), select_rank(steps, S, K, k, (S / 2 - 1 + S) % S));
}

}  // namespace

void reduce_candidates(const double* costs, const int64_t* cand, int64_t G, int64_t M, int64_t J,
                       double* min_out, int64_t* arg_out, void* stream) {
  if (G * J == 0) return;
  reduce_kernel<<<blocks_for(G * J), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      costs, cand, G, M, J, min_out, arg_out);
  check(cudaGetLastError(), "reduce_candidates");
}

void level_update(int mode, const double* min_in, const int64_t* arg_in, double* best,
                  int64_t* from, uint8_t* improved, int64_t G, int64_t J, int64_t K, int64_t k,
                  void* stream) {
  if (G * J == 0) return;
  update_kernel<<<blocks_for(G * J), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      mode, min_in, arg_in, best, from, improved, G, J, K, k);
  check(cudaGetLastError(), "level_update");
}

void traceback(const int64_t* from, int64_t G, int64_t K, int64_t J, int64_t* path, void* stream) {
  if (G == 0) return;
  traceback_kernel<<<blocks_for(G), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(from, G, K,
                                                                                      J, path);
  check(cudaGetLastError(), "traceback");
}

void kstep_path(const double* cost, int64_t G, int64_t J, int64_t K, int objective, int64_t* path,
                double* value, void* stream) {
  if (G == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  double* work_values = nullptr;
  int64_t* work_from = nullptr;
  check(cudaMallocAsync(&work_values, sizeof(double) * G * 2 * J, s), "kstep_path allocation");
  check(cudaMallocAsync(&work_from, sizeof(int64_t) * G * (K + 1) * J, s), "kstep_path allocation");
  kstep_kernel<<<static_cast<unsigned>(G), kThreads, 0, s>>>(cost, G, J, K, objective, work_values,
                                                             work_from, path, value);
  check(cudaGetLastError(), "kstep_path");
  check(cudaFreeAsync(work_values, s), "kstep_path free");
  check(cudaFreeAsync(work_from, s), "kstep_path free");
}

void median_steps(const int64_t* steps, int64_t S, int64_t K, int64_t* out, void* stream) {
  if (K == 0) return;
  median_kernel<<<blocks_for(K), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(steps, S, K,
                                                                                  out);
  check(cudaGetLastError(), "median_steps");
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace cuda
}  // namespace oss_fast
