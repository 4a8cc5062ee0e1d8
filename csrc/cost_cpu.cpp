#include <cmath>
#include <limits>

#include "cost.h"

namespace oss_fast {
namespace cpu {

namespace {

constexpr int kLanes = 8;     // independent float64 accumulators: vectorisable, and a fixed order
constexpr int64_t kBlock = 512;  // elements between checks against the bound

inline double lane_total(const double* a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// Sum over one block of elements into the lanes. Compiled for AVX2 and for the baseline ISA; the
// loader picks one.
template <int Norm>
__attribute__((target_clones("avx2", "default")))
void block_sum(const float* x, const float* v, const float* t, float ds, int64_t n, double* acc) {
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float xj = x[d + l] + v[d + l] * ds;
      const double e = static_cast<double>(xj - t[d + l]);
      acc[l] += Norm == 2 ? e * e : std::fabs(e);
    }
  }
  for (int l = 0; d < n; ++d, ++l) {
    const float xj = x[d] + v[d] * ds;
    const double e = static_cast<double>(xj - t[d]);
    acc[l] += Norm == 2 ? e * e : std::fabs(e);
  }
}

// The sum of one (row, target) pair, or +inf once a partial sum reaches limit.
template <int Norm>
double pair_sum(const float* x, const float* v, const float* t, float ds, int64_t D, double limit) {
  double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t d = 0; d < D; d += kBlock) {
    // full blocks keep every element in the same lane whatever the block boundaries
    block_sum<Norm>(x + d, v + d, t + d, ds, D - d < kBlock ? D - d : kBlock, acc);
    if (d + kBlock < D && lane_total(acc) >= limit) return std::numeric_limits<double>::infinity();
  }
  return lane_total(acc);
}

template <int Norm>
void costs(const float* x, const float* v, const float* targets, const int64_t* row_sample,
           const int64_t* row_grid, const double* s, int64_t R, int64_t D, int64_t J, int64_t B,
           const double* bound, double* out) {
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
      const int64_t b = row_sample[r];
      // the margin keeps rounding of bound * D from stopping a pair whose cost is just below bound
      const double limit = bound ? bound[b * J + j] * static_cast<double>(D) * (1 + 1e-12) : inf;
      const double sum = pair_sum<Norm>(x + r * D, v + r * D, targets + (j * B + b) * D, ds, D, limit);
      out[r * J + j] = sum / static_cast<double>(D);
    }
  }
}

// The multistep sum of one (row, target) pair, or +inf once a partial sum reaches limit.
template <int Norm>
double combo_pair_sum(const float* x, const float* v, const double* hist, const double* c, const float* t,
                      int64_t D, int64_t H, double limit) {
  double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t d0 = 0; d0 < D; d0 += kBlock) {
    const int64_t end = D - d0 < kBlock ? D : d0 + kBlock;
    for (int64_t d = d0; d < end; ++d) {
      double y = c[0] * static_cast<double>(x[d]) + c[1] * static_cast<double>(v[d]);
      for (int64_t k = 0; k < H; ++k) y = y + c[2 + k] * hist[k * D + d];
      const double e = static_cast<double>(static_cast<float>(y) - t[d]);
      acc[(d - d0) % kLanes] += Norm == 2 ? e * e : std::fabs(e);
    }
    if (end < D && lane_total(acc) >= limit) return std::numeric_limits<double>::infinity();
  }
  return lane_total(acc);
}

template <int Norm>
void combo_costs(const float* x, const float* v, const double* hist, const double* coef, const float* targets,
                 const int64_t* row_sample, const int64_t* row_grid, int64_t R, int64_t D, int64_t J, int64_t B,
                 int64_t H, const double* bound, double* out) {
  const double inf = std::numeric_limits<double>::infinity();
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < J; ++j) {
      if (j >= row_grid[r]) {
        out[r * J + j] = inf;
        continue;
      }
      const int64_t b = row_sample[r];
      const double limit = bound ? bound[b * J + j] * static_cast<double>(D) * (1 + 1e-12) : inf;
      const double sum = combo_pair_sum<Norm>(x + r * D, v + r * D, hist + r * H * D, coef + (r * J + j) * (2 + H),
                                              targets + (j * B + b) * D, D, H, limit);
      out[r * J + j] = sum / static_cast<double>(D);
    }
  }
}

}  // namespace

void combo_costs_f32(const float* x, const float* v, const double* hist, const double* coef,
                     const float* targets, const int64_t* row_sample, const int64_t* row_grid, int64_t R,
                     int64_t D, int64_t J, int64_t B, int64_t H, int norm, const double* bound, double* out) {
  if (norm == 2)
    combo_costs<2>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, H, bound, out);
  else
    combo_costs<1>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, H, bound, out);
}

void euler_costs_f32(const float* x, const float* v, const float* targets, const int64_t* row_sample,
                     const int64_t* row_grid, const double* s, int64_t R, int64_t D, int64_t J,
                     int64_t B, int norm, const double* bound, double* out) {
  if (norm == 2)
    costs<2>(x, v, targets, row_sample, row_grid, s, R, D, J, B, bound, out);
  else
    costs<1>(x, v, targets, row_sample, row_grid, s, R, D, J, B, bound, out);
}

}  // namespace cpu
}  // namespace oss_fast
