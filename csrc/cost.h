// Fused Euler-jump cost on the CPU (DESIGN §4): for every candidate row r and target j < grid[r],
//   cost[r, j] = mean_d |x[r, d] + v[r, d] * ds - T[j, sample[r], d]|^p,  ds = float(s[j] - s[grid[r]]),
// with the Euler update in float32 (separate multiply and add roundings, as torch does), the
// difference in float32 and the sum in float64. Targets j >= grid[r] get +inf.
#pragma once
#include <cstdint>

namespace oss_fast {
namespace cpu {

// x, v [R, D]; targets [J, B, D] (the first J grid indices); row_sample, row_grid [R] (grid
// indices of s, checked by the caller); s: the grid; out [R, J]; norm 1 or 2.
// bound [B, J] (may be null): a pair whose cost is already >= bound[sample, j] (it cannot win a
// strict `<` against it) may stop early and report +inf. The sum only grows, so this never
// changes which pair wins; pairs below their bound get their exact cost.
void euler_costs_f32(const float* x, const float* v, const float* targets, const int64_t* row_sample,
                     const int64_t* row_grid, const double* s, int64_t R, int64_t D, int64_t J,
                     int64_t B, int norm, const double* bound, double* out);

// The multistep twin (DESIGN §3.5): the jump's result is a linear combination of the row's vectors,
//   x_j = round_to_f32(((c[r,j,0] x[r] + c[r,j,1] v[r]) + c[r,j,2] h[r,0]) + ...)   (float64, in this order)
// with per-pair coefficients c [R, J, 2 + H] and history vectors h [R, H, D] (float64); the cost is
// then taken as above (difference in float32, sum in float64). Targets j >= grid[r] get +inf.
void combo_costs_f32(const float* x, const float* v, const double* hist, const double* coef,
                     const float* targets, const int64_t* row_sample, const int64_t* row_grid, int64_t R,
                     int64_t D, int64_t J, int64_t B, int64_t H, int norm, const double* bound, double* out);

// One step of W rows of a multistep solver: row w steps row src[w] of x, v [R, D] and hist [R, H, D]
// with the step matrix M [W, 1 + H, 2 + H] and writes row dst[w] of out_x [S, D] and out_h [S, H, D]:
// with u = [x[src[w]], v[src[w]], hist[src[w], 0], ..., hist[src[w], H-1]],
//   out_x[dst[w]]    = round_to_f32(((M[w,0,0] u_0 + M[w,0,1] u_1) + M[w,0,2] u_2) + ...)
//   out_h[dst[w], k] = ((M[w,1+k,0] u_0 + M[w,1+k,1] u_1) + ...)                       (float64)
// with the products and sums of combo_costs_f32's combination, so the state a search keeps is the
// one its cost was taken of. The caller checks the indices, that dst has no repeats and that the
// outputs do not overlap the inputs.
void step_rows_f32(const float* x, const float* v, const double* hist, const int64_t* src, const double* M,
                   const int64_t* dst, int64_t W, int64_t D, int64_t H, float* out_x, double* out_h);

}  // namespace cpu
}  // namespace oss_fast
