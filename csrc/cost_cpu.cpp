#include <cmath>
#include <limits>

#include "cost.h"

namespace oss_fast {
namespace cpu {

namespace {

constexpr int kLanes = 8;  // independent float64 accumulators: vectorisable, and a fixed order

// One (row, target) pair. Compiled for AVX2 and for the baseline ISA; the loader picks one.
template <int Norm>
__attribute__((target_clones("avx2", "default")))
double pair_sum(const float* x, const float* v, const float* t, float ds, int64_t D) {
  double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + kLanes <= D; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float xj = x[d + l] + v[d + l] * ds;
      const double e = static_cast<double>(xj - t[d + l]);
      acc[l] += Norm == 2 ? e * e : std::fabs(e);
    }
  }
  for (int l = 0; d < D; ++d, ++l) {
    const float xj = x[d] + v[d] * ds;
    const double e = static_cast<double>(xj - t[d]);
    acc[l] += Norm == 2 ? e * e : std::fabs(e);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <int Norm>
void costs(const float* x, const float* v, const float* targets, const int64_t* row_sample,
           const int64_t* row_grid, const double* s, int64_t R, int64_t D, int64_t J, int64_t B,
           double* out) {
  const double inf = std::numeric_limits<double>::infinity();
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < J; ++j) {
      const int64_t i = row_grid[r];
      if (j >= i) {
        out[r * J + j] = inf;
        continue;
      }
      const float ds = static_cast<float>(s[j] - s[i]);
      const float* t = targets + (j * B + row_sample[r]) * D;
      out[r * J + j] = pair_sum<Norm>(x + r * D, v + r * D, t, ds, D) / static_cast<double>(D);
    }
  }
}

}  // namespace

void euler_costs_f32(const float* x, const float* v, const float* targets, const int64_t* row_sample,
                     const int64_t* row_grid, const double* s, int64_t R, int64_t D, int64_t J,
                     int64_t /*S*/, int64_t B, int norm, double* out) {
  if (norm == 2)
    costs<2>(x, v, targets, row_sample, row_grid, s, R, D, J, B, out);
  else
    costs<1>(x, v, targets, row_sample, row_grid, s, R, D, J, B, out);
}

}  // namespace cpu
}  // namespace oss_fast
