#include <algorithm>
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

// Multistep sum over one block of elements into the lanes: the combination in float64 in the op's
// order, rounded to float32, differenced with the target. H (history vectors) is a compile-time
// constant so that the lane loop vectorises.
template <int Norm, int H>
__attribute__((target_clones("avx2", "default")))
void combo_block_sum(const float* x, const float* v, const double* const* h, const double* c, const float* t,
                     int64_t n, double* acc) {
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      double y = c[0] * static_cast<double>(x[d + l]) + c[1] * static_cast<double>(v[d + l]);
      for (int k = 0; k < H; ++k) y = y + c[2 + k] * h[k][d + l];
      const double e = static_cast<double>(static_cast<float>(y) - t[d + l]);
      acc[l] += Norm == 2 ? e * e : std::fabs(e);
    }
  }
  for (int l = 0; d < n; ++d, ++l) {
    double y = c[0] * static_cast<double>(x[d]) + c[1] * static_cast<double>(v[d]);
    for (int k = 0; k < H; ++k) y = y + c[2 + k] * h[k][d];
    const double e = static_cast<double>(static_cast<float>(y) - t[d]);
    acc[l] += Norm == 2 ? e * e : std::fabs(e);
  }
}

// The multistep sum of one (row, target) pair, or +inf once a partial sum reaches limit.
template <int Norm, int H>
double combo_pair_sum(const float* x, const float* v, const double* hist, const double* c, const float* t,
                      int64_t D, double limit) {
  double acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  const double* h[H > 0 ? H : 1];
  for (int k = 0; k < H; ++k) h[k] = hist + k * D;
  for (int64_t d = 0; d < D; d += kBlock) {
    const double* hd[H > 0 ? H : 1];
    for (int k = 0; k < H; ++k) hd[k] = h[k] + d;
    combo_block_sum<Norm, H>(x + d, v + d, hd, c, t + d, D - d < kBlock ? D - d : kBlock, acc);
    if (d + kBlock < D && lane_total(acc) >= limit) return std::numeric_limits<double>::infinity();
  }
  return lane_total(acc);
}

// Without a bound, rows are scored against a block of kTargets targets at a time: each element of
// the row's vectors is loaded and widened once for the whole block. Per pair, the lanes and their
// order are those of combo_pair_sum, so both paths give the same sums.
constexpr int kTargets = 4;

// One chunk of m <= kLanes elements of a row against nt targets (M: the chunk length when fixed, so
// that full chunks compile to straight vector code).
template <int Norm, int H, int M>
inline void combo_chunk(const float* x, const float* v, const double* const* h, const double* const* c,
                        const float* const* t, int nt, int64_t d0, int m, double (*acc)[kLanes]) {
  const int len = M > 0 ? M : m;
  double u[2 + (H > 0 ? H : 1)][kLanes];
  for (int l = 0; l < len; ++l) {
    u[0][l] = static_cast<double>(x[d0 + l]);
    u[1][l] = static_cast<double>(v[d0 + l]);
    for (int k = 0; k < H; ++k) u[2 + k][l] = h[k][d0 + l];
  }
  for (int q = 0; q < nt; ++q) {
    for (int l = 0; l < len; ++l) {
      double y = c[q][0] * u[0][l] + c[q][1] * u[1][l];
      for (int k = 0; k < H; ++k) y = y + c[q][2 + k] * u[2 + k][l];
      const double e = static_cast<double>(static_cast<float>(y) - t[q][d0 + l]);
      acc[q][l] += Norm == 2 ? e * e : std::fabs(e);
    }
  }
}

template <int Norm, int H>
__attribute__((target_clones("avx2", "default")))
void combo_block_sums(const float* x, const float* v, const double* const* h, const double* const* c,
                      const float* const* t, int nt, int64_t n, double (*acc)[kLanes]) {
  int64_t d0 = 0;
  for (; d0 + kLanes <= n; d0 += kLanes) combo_chunk<Norm, H, kLanes>(x, v, h, c, t, nt, d0, kLanes, acc);
  if (d0 < n) combo_chunk<Norm, H, 0>(x, v, h, c, t, nt, d0, static_cast<int>(n - d0), acc);
}

template <int Norm, int H>
void combo_costs(const float* x, const float* v, const double* hist, const double* coef, const float* targets,
                 const int64_t* row_sample, const int64_t* row_grid, int64_t R, int64_t D, int64_t J, int64_t B,
                 const double* bound, double* out) {
  const double inf = std::numeric_limits<double>::infinity();
  if (bound) {
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t j = 0; j < J; ++j) {
        if (j >= row_grid[r]) {
          out[r * J + j] = inf;
          continue;
        }
        const int64_t b = row_sample[r];
        const double limit = bound[b * J + j] * static_cast<double>(D) * (1 + 1e-12);
        const double sum = combo_pair_sum<Norm, H>(x + r * D, v + r * D, hist + r * H * D,
                                                   coef + (r * J + j) * (2 + H), targets + (j * B + b) * D, D,
                                                   limit);
        out[r * J + j] = sum / static_cast<double>(D);
      }
    }
    return;
  }
  const int64_t blocks = (J + kTargets - 1) / kTargets;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t jb = 0; jb < blocks; ++jb) {
      const int64_t b = row_sample[r], j0 = jb * kTargets;
      const int nt = static_cast<int>(std::min<int64_t>(kTargets, J - j0));
      const double* c[kTargets];
      const float* t[kTargets];
      double acc[kTargets][kLanes] = {};
      for (int q = 0; q < nt; ++q) {
        c[q] = coef + (r * J + j0 + q) * (2 + H);
        t[q] = targets + ((j0 + q) * B + b) * D;
      }
      const int reach = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(nt, row_grid[r] - j0)));
      const double* h[H > 0 ? H : 1];
      for (int64_t d = 0; reach > 0 && d < D; d += kBlock) {
        for (int k = 0; k < H; ++k) h[k] = hist + (r * H + k) * D + d;
        const float* td[kTargets];
        for (int q = 0; q < reach; ++q) td[q] = t[q] + d;
        combo_block_sums<Norm, H>(x + r * D + d, v + r * D + d, h, c, td, reach, D - d < kBlock ? D - d : kBlock,
                                  acc);
      }
      for (int q = 0; q < nt; ++q)
        out[r * J + j0 + q] = q < reach ? lane_total(acc[q]) / static_cast<double>(D) : inf;
    }
  }
}

template <int Norm>
void combo_costs_for_h(const float* x, const float* v, const double* hist, const double* coef,
                       const float* targets, const int64_t* row_sample, const int64_t* row_grid, int64_t R,
                       int64_t D, int64_t J, int64_t B, int64_t H, const double* bound, double* out) {
  switch (H) {
    case 0: return combo_costs<Norm, 0>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, bound, out);
    case 1: return combo_costs<Norm, 1>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, bound, out);
    case 2: return combo_costs<Norm, 2>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, bound, out);
    default: return combo_costs<Norm, 3>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, bound, out);
  }
}

}  // namespace

void combo_costs_f32(const float* x, const float* v, const double* hist, const double* coef,
                     const float* targets, const int64_t* row_sample, const int64_t* row_grid, int64_t R,
                     int64_t D, int64_t J, int64_t B, int64_t H, int norm, const double* bound, double* out) {
  if (norm == 2)
    combo_costs_for_h<2>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, H, bound, out);
  else
    combo_costs_for_h<1>(x, v, hist, coef, targets, row_sample, row_grid, R, D, J, B, H, bound, out);
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
