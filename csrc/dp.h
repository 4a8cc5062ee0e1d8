// Pathfinding core of oss_fast: the per-level DP update of modes compat/exact (DESIGN §3.1, §3.2),
// the trace-back, the K-edge shortest path of mode teacher (§3.3) and the median rule (§3.4).
// The CPU functions (namespace cpu) and their CUDA twins (namespace cuda) share one signature, take
// raw, contiguous arrays and never allocate what the caller can see. Arguments are checked by the
// entry points in bindings.cpp, not here.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define OSS_HD __host__ __device__ __forceinline__
#else
#define OSS_HD inline
#endif

namespace oss_fast {

enum Mode : int { kCompat = 0, kExact = 1 };
enum Objective : int { kSum = 0, kMax = 1 };

// The one tie rule of the whole search: a candidate (cost c, grid index i) replaces the running
// winner (best, best_i) when it is strictly cheaper, or equally cheap and from a larger grid index.
// This is what scanning candidates in descending i with a strict `<` gives. NaN never wins and
// +inf never wins (the running value starts at +inf with best_i = -1).
OSS_HD bool beats(double c, int64_t i, double best, int64_t best_i) {
  return c < best || (c == best && best_i >= 0 && i > best_i);
}

// Per-target min/argmin over one group's candidates (costs_g [M, J], cand_g [M]).
OSS_HD void reduce_target(const double* costs_g, const int64_t* cand_g, int64_t M, int64_t J,
                          int64_t j, double* min_out, int64_t* arg_out) {
  double best = __builtin_huge_val();
  int64_t best_i = -1;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t i = cand_g[m];
    if (i > j && beats(costs_g[m * J + j], i, best, best_i)) {
      best = costs_g[m * J + j];
      best_i = i;
    }
  }
  *min_out = best;
  *arg_out = best_i;
}

// One target of one level. compat: improve the running best (carried over from earlier levels);
// exact: the level's own best is whatever this level reached. Returns whether j was reached/improved.
OSS_HD bool update_target(int mode, double mn, int64_t arg, double* best_j, int64_t* from_kj) {
  const bool improved = arg >= 0 && (mode == kExact || mn < *best_j);
  if (improved) {
    *best_j = mn;
    *from_kj = arg;
  } else if (mode == kExact) {
    *best_j = __builtin_huge_val();
  }
  return improved;
}

// A first jump's cost as the value level 0 starts from: NaN counts as unusable (+inf), so that
// the max objective cannot hide it behind a larger later cost.
OSS_HD double first_jump_value(double c) { return c == c ? c : __builtin_huge_val(); }

// One target j of level k >= 1 of the K-edge shortest path: prev [J] holds level k-1's values.
OSS_HD void kstep_target(const double* cost_g, const double* prev, int64_t J, int64_t j,
                         int objective, double* value_out, int64_t* from_out) {
  double best = __builtin_huge_val();
  int64_t best_i = -1;
  for (int64_t i = J - 1; i > j; --i) {
    const double c = cost_g[i * J + j];
    const double v = objective == kSum ? prev[i] + c : (prev[i] > c ? prev[i] : c);
    if (beats(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  *value_out = best;
  *from_out = best_i;
}

// Trace-back of one group (DESIGN §3.1 Result): from grid index 0 through from_g [K+1, J], one
// level per step, into path_g [K] ascending; -1 from where a predecessor leaves the grid.
OSS_HD void traceback_group(const int64_t* from_g, int64_t K, int64_t J, int64_t* path_g) {
  int64_t j = 0;
  for (int64_t k = K - 1; k >= 0; --k) {
    j = (j >= 0 && j < J) ? from_g[k * J + j] : -1;
    path_g[K - 1 - k] = (j >= 0 && j < J) ? j : -1;
  }
}

// The published cal_medium rule on two middle values: (a + b) // 2 with Python's floor division,
// computed without overflowing int64 (floor(a/2) + floor(b/2) + both odd).
OSS_HD int64_t floor_midpoint(int64_t a, int64_t b) { return (a >> 1) + (b >> 1) + (a & b & 1); }

// Layouts (all row-major, contiguous):
//   costs [G, M, J]   cost of candidate m of group g to target j (J = N + 1 grid indices)
//   cand  [G, M]      grid index of candidate m (-1 = padding); only targets j < cand count
//   best  [G, J]      running best cost per target
//   from  [G, K+1, J] predecessor per level and target
//   improved [G, J]   1 where the level improved target j
//   min/arg [G, J]    per-target minimum and its grid index (-1 = no candidate)
//   path [G, K]       grid indices, ascending; path[K-1] is where sampling starts
namespace cpu {
void reduce_candidates(const double* costs, const int64_t* cand, int64_t G, int64_t M, int64_t J,
                       double* min_out, int64_t* arg_out);
void level_update(int mode, const double* min_in, const int64_t* arg_in, double* best,
                  int64_t* from, uint8_t* improved, int64_t G, int64_t J, int64_t K, int64_t k);
void traceback(const int64_t* from, int64_t G, int64_t K, int64_t J, int64_t* path);
// cost [G, J, J]: cost[g, i, j] is the cost of the jump i -> j (only i > j is read).
// value [G]: the objective of the returned path (+inf and a path of -1 where none is finite).
void kstep_path(const double* cost, int64_t G, int64_t J, int64_t K, int objective, int64_t* path,
                double* value);
// steps [S, K] -> out [K]: per position, sorted l, floor_midpoint(l[S/2], l[S/2 - 1]).
void median_steps(const int64_t* steps, int64_t S, int64_t K, int64_t* out);
}  // namespace cpu

// Same signatures plus the CUDA stream (cudaStream_t) to run on; all pointers are device pointers.
namespace cuda {
void reduce_candidates(const double* costs, const int64_t* cand, int64_t G, int64_t M, int64_t J,
                       double* min_out, int64_t* arg_out, void* stream);
void level_update(int mode, const double* min_in, const int64_t* arg_in, double* best,
                  int64_t* from, uint8_t* improved, int64_t G, int64_t J, int64_t K, int64_t k,
                  void* stream);
void traceback(const int64_t* from, int64_t G, int64_t K, int64_t J, int64_t* path, void* stream);
void kstep_path(const double* cost, int64_t G, int64_t J, int64_t K, int objective, int64_t* path,
                double* value, void* stream);
void median_steps(const int64_t* steps, int64_t S, int64_t K, int64_t* out, void* stream);
int device_count();  // 0 where no driver or no GPU
}  // namespace cuda

}  // namespace oss_fast
