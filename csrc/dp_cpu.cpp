// CPU implementations of the pathfinding core (see dp.h). OpenMP spreads groups and targets over
// cores only where there is enough work to pay for the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dp.h"

namespace oss_fast {
namespace cpu {

namespace {
constexpr int64_t kParallelWork = 1 << 16;
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

void reduce_candidates(const double* costs, const int64_t* cand, int64_t G, int64_t M, int64_t J,
                       double* min_out, int64_t* arg_out) {
#pragma omp parallel for collapse(2) if (G * M * J > kParallelWork)
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j = 0; j < J; ++j)
      reduce_target(costs + g * M * J, cand + g * M, M, J, j, min_out + g * J + j,
                    arg_out + g * J + j);
}

void level_update(int mode, const double* min_in, const int64_t* arg_in, double* best,
                  int64_t* from, uint8_t* improved, int64_t G, int64_t J, int64_t K, int64_t k) {
  for (int64_t g = 0; g < G; ++g) {
    int64_t* from_k = from + (g * (K + 1) + k) * J;
    for (int64_t j = 0; j < J; ++j)
      improved[g * J + j] = update_target(mode, min_in[g * J + j], arg_in[g * J + j],
                                          best + g * J + j, from_k + j);
    // compat carries the predecessors over to the next level (DESIGN §3.1 step 4).
    if (mode == kCompat && k + 1 <= K) std::copy(from_k, from_k + J, from_k + J);
  }
}

void traceback(const int64_t* from, int64_t G, int64_t K, int64_t J, int64_t* path) {
  for (int64_t g = 0; g < G; ++g) traceback_group(from + g * (K + 1) * J, K, J, path + g * K);
}

void kstep_path(const double* cost, int64_t G, int64_t J, int64_t K, int objective, int64_t* path,
                double* value) {
  // Workspace for every group, allocated before the parallel region (nothing may throw inside it).
  // from has the layout of the level DP ([K+1, J] per group) so that traceback_group serves both.
  std::vector<int64_t> from_all(G * (K + 1) * J, -1);
  std::vector<double> values_all(G * 2 * J, kInf);
#pragma omp parallel for if (G * K * J * J > kParallelWork)
  for (int64_t g = 0; g < G; ++g) {
    const double* cost_g = cost + g * J * J;
    const int64_t N = J - 1;
    int64_t* from = from_all.data() + g * (K + 1) * J;
    double* prev = values_all.data() + g * 2 * J;
    double* cur = prev + J;
    for (int64_t j = 0; j < N; ++j) {
      prev[j] = first_jump_value(cost_g[N * J + j]);
      from[j] = N;
    }
    for (int64_t k = 1; k < K; ++k) {
      for (int64_t j = 0; j < J; ++j) kstep_target(cost_g, prev, J, j, objective, &cur[j], &from[k * J + j]);
      std::swap(prev, cur);
    }
    if (prev[0] < kInf) {
      traceback_group(from, K, J, path + g * K);
      value[g] = prev[0];
    } else {
      std::fill(path + g * K, path + (g + 1) * K, -1);
      value[g] = kInf;
    }
  }
}

void median_steps(const int64_t* steps, int64_t S, int64_t K, int64_t* out) {
  std::vector<int64_t> column(S);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t s = 0; s < S; ++s) column[s] = steps[s * K + k];
    std::sort(column.begin(), column.end());
    // Python's l[S//2 - 1] wraps to the last element when S == 1.
    out[k] = floor_midpoint(column[S / 2], column[(S / 2 - 1 + S) % S]);
  }
}

}  // namespace cpu
}  // namespace oss_fast
