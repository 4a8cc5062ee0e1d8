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

}  // namespace cpu
}  // namespace oss_fast
