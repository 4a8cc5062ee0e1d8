#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Multistep sums: a row's vectors combined in float64 in the op's order, rounded to float32 and
// differenced with the target, for nt <= kTargets targets at a time, so that each element of the row is
// loaded and widened once for all of them. Element d goes to lane d % kLanes of its pair's
// accumulators whatever the block boundaries, so every path gives the same sums. H (history vectors)
// is a compile-time constant.
constexpr int kTargets = 4;

// One chunk of m <= kLanes elements (M: the chunk length when fixed, so that full chunks compile to
// straight vector code).
template <int Norm, int H, int M>
inline void combo_chunk(const float* x, const float* v, const double* const* h, const double* const* c,
                        const float* const* t, int nt, int64_t d0, int m, double (*acc)[kLanes]) {
  const int len = M > 0 ? M : m;
  double u[2 + H][kLanes];
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
void combo_block_sums_generic(const float* x, const float* v, const double* const* h, const double* const* c,
                              const float* const* t, int nt, int64_t n, double (*acc)[kLanes]) {
  int64_t d0 = 0;
  for (; d0 + kLanes <= n; d0 += kLanes) combo_chunk<Norm, H, kLanes>(x, v, h, c, t, nt, d0, kLanes, acc);
  if (d0 < n) combo_chunk<Norm, H, 0>(x, v, h, c, t, nt, d0, static_cast<int>(n - d0), acc);
}

#if defined(__x86_64__)
// The AVX2 twin, written out because the compiler leaves the generic loop mostly scalar: the same
// products, sums and roundings (no fused multiply-add; cvtpd_ps rounds to nearest like the cast),
// each kLanes chunk as two registers of four float64 lanes.
template <int Norm, int H>
__attribute__((target("avx2")))
void combo_block_sums_avx2(const float* x, const float* v, const double* const* h, const double* const* c,
                           const float* const* t, int nt, int64_t n, double (*acc)[kLanes]) {
  static_assert(kLanes == 8, "two registers of four lanes");
  const __m256d sign = _mm256_set1_pd(-0.0);
  __m256d lo[kTargets], hi[kTargets];
  for (int q = 0; q < nt; ++q) {
    lo[q] = _mm256_loadu_pd(acc[q]);
    hi[q] = _mm256_loadu_pd(acc[q] + 4);
  }
  int64_t d0 = 0;
  for (; d0 + kLanes <= n; d0 += kLanes) {
    __m256d ulo[2 + H], uhi[2 + H];
    ulo[0] = _mm256_cvtps_pd(_mm_loadu_ps(x + d0));
    uhi[0] = _mm256_cvtps_pd(_mm_loadu_ps(x + d0 + 4));
    ulo[1] = _mm256_cvtps_pd(_mm_loadu_ps(v + d0));
    uhi[1] = _mm256_cvtps_pd(_mm_loadu_ps(v + d0 + 4));
    for (int k = 0; k < H; ++k) {
      ulo[2 + k] = _mm256_loadu_pd(h[k] + d0);
      uhi[2 + k] = _mm256_loadu_pd(h[k] + d0 + 4);
    }
    for (int q = 0; q < nt; ++q) {
      __m256d ylo = _mm256_mul_pd(_mm256_broadcast_sd(c[q]), ulo[0]);
      __m256d yhi = _mm256_mul_pd(_mm256_broadcast_sd(c[q]), uhi[0]);
      for (int k = 1; k < 2 + H; ++k) {
        const __m256d ck = _mm256_broadcast_sd(c[q] + k);
        ylo = _mm256_add_pd(ylo, _mm256_mul_pd(ck, ulo[k]));
        yhi = _mm256_add_pd(yhi, _mm256_mul_pd(ck, uhi[k]));
      }
      const __m256d elo = _mm256_cvtps_pd(_mm_sub_ps(_mm256_cvtpd_ps(ylo), _mm_loadu_ps(t[q] + d0)));
      const __m256d ehi = _mm256_cvtps_pd(_mm_sub_ps(_mm256_cvtpd_ps(yhi), _mm_loadu_ps(t[q] + d0 + 4)));
      lo[q] = _mm256_add_pd(lo[q], Norm == 2 ? _mm256_mul_pd(elo, elo) : _mm256_andnot_pd(sign, elo));
      hi[q] = _mm256_add_pd(hi[q], Norm == 2 ? _mm256_mul_pd(ehi, ehi) : _mm256_andnot_pd(sign, ehi));
    }
  }
  for (int q = 0; q < nt; ++q) {
    _mm256_storeu_pd(acc[q], lo[q]);
    _mm256_storeu_pd(acc[q] + 4, hi[q]);
  }
  if (d0 < n) combo_chunk<Norm, H, 0>(x, v, h, c, t, nt, d0, static_cast<int>(n - d0), acc);
}
#endif

template <int Norm, int H>
void combo_block_sums(const float* x, const float* v, const double* const* h, const double* const* c,
                      const float* const* t, int nt, int64_t n, double (*acc)[kLanes]) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return combo_block_sums_avx2<Norm, H>(x, v, h, c, t, nt, n, acc);
#endif
  combo_block_sums_generic<Norm, H>(x, v, h, c, t, nt, n, acc);
}

// The multistep sum of one (row, target) pair, or +inf once a partial sum reaches limit.
template <int Norm, int H>
double combo_pair_sum(const float* x, const float* v, const double* hist, const double* c, const float* t,
                      int64_t D, double limit) {
  double acc[1][kLanes] = {};
  const double* hd[H > 0 ? H : 1];
  for (int64_t d = 0; d < D; d += kBlock) {
    for (int k = 0; k < H; ++k) hd[k] = hist + k * D + d;
    const float* td = t + d;
    combo_block_sums<Norm, H>(x + d, v + d, hd, &c, &td, 1, D - d < kBlock ? D - d : kBlock, acc);
    if (d + kBlock < D && lane_total(acc[0]) >= limit) return std::numeric_limits<double>::infinity();
  }
  return lane_total(acc[0]);
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

// One multistep step of a block of n elements of a row: every output row o of M combines the vectors
// u = [x, v, h_0, ...] in the cost op's order and roundings; row 0 is the state (rounded to float32),
// rows 1..H the new history (float64).
template <int H>
__attribute__((target_clones("avx2", "default")))
void step_block(const float* x, const float* v, const double* const* h, const double* M, int64_t n, float* out_x,
                double* const* out_h) {
  for (int64_t d = 0; d < n; ++d) {
    const double u0 = static_cast<double>(x[d]), u1 = static_cast<double>(v[d]);
    double y = M[0] * u0 + M[1] * u1;
    for (int k = 0; k < H; ++k) y = y + M[2 + k] * h[k][d];
    out_x[d] = static_cast<float>(y);
    for (int o = 0; o < H; ++o) {
      const double* row = M + (1 + o) * (2 + H);
      double z = row[0] * u0 + row[1] * u1;
      for (int k = 0; k < H; ++k) z = z + row[2 + k] * h[k][d];
      out_h[o][d] = z;
    }
  }
}

template <int H>
void step_rows(const float* x, const float* v, const double* hist, const int64_t* src, const double* M,
               const int64_t* dst, int64_t W, int64_t D, float* out_x, double* out_h) {
  const int64_t blocks = (D + kBlock - 1) / kBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t w = 0; w < W; ++w) {
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t r = src[w], o = dst[w], d = blk * kBlock, n = std::min(kBlock, D - d);
      const double* h[H > 0 ? H : 1];
      double* oh[H > 0 ? H : 1];
      for (int k = 0; k < H; ++k) {
        h[k] = hist + (r * H + k) * D + d;
        oh[k] = out_h + (o * H + k) * D + d;
      }
      step_block<H>(x + r * D + d, v + r * D + d, h, M + w * (1 + H) * (2 + H), n, out_x + o * D + d, oh);
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

void step_rows_f32(const float* x, const float* v, const double* hist, const int64_t* src, const double* M,
                   const int64_t* dst, int64_t W, int64_t D, int64_t H, float* out_x, double* out_h) {
  switch (H) {
    case 0: return step_rows<0>(x, v, hist, src, M, dst, W, D, out_x, out_h);
    case 1: return step_rows<1>(x, v, hist, src, M, dst, W, D, out_x, out_h);
    case 2: return step_rows<2>(x, v, hist, src, M, dst, W, D, out_x, out_h);
    default: return step_rows<3>(x, v, hist, src, M, dst, W, D, out_x, out_h);
  }
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
