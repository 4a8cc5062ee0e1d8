// Python entry points of the pathfinding core. Arrays arrive as raw addresses (from
// torch.Tensor.data_ptr()) with their sizes; oss_fast/dp.py checks dtypes, devices, shapes and
// contiguity first. These entry points check again what can be checked from here (sizes, null
// and host/device addresses, enum values) and raise ValueError naming the argument, so a bad call
// never reaches a kernel. Work runs with the GIL released.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cost.h"
#include "dp.h"

namespace py = pybind11;
using oss_fast::kCompat;
using oss_fast::kExact;
using oss_fast::kMax;
using oss_fast::kSum;

namespace {

enum class Device { kCpu, kCuda };

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

void check_size(const char* name, int64_t v, int64_t min) {
  if (v < min) fail(std::string(name) + " must be >= " + std::to_string(min) + ", got " + std::to_string(v));
}

template <typename T>
T* address(const char* name, uintptr_t addr, int64_t elements, Device device) {
  if (elements == 0) return reinterpret_cast<T*>(addr);
  if (addr == 0) fail(std::string(name) + " is a null pointer");
  if (addr % alignof(T) != 0) fail(std::string(name) + " is not aligned for its dtype");
#if OSS_FAST_WITH_CUDA
  // Only the CUDA twin asks the driver: asking on the CPU path would create a CUDA context.
  if (device == Device::kCuda && !oss_fast::cuda::is_device_pointer(reinterpret_cast<void*>(addr)))
    fail(std::string(name) + " is not a CUDA device pointer");
#else
  (void)device;
#endif
  return reinterpret_cast<T*>(addr);
}

void check_mode(int mode) {
  if (mode != kCompat && mode != kExact) fail("mode must be 0 (compat) or 1 (exact), got " + std::to_string(mode));
}

void check_objective(int objective) {
  if (objective != kSum && objective != kMax) fail("objective must be 0 (sum) or 1 (max), got " + std::to_string(objective));
}

// Runs on_cpu(), or on_cuda(stream) for the CUDA twin, with the GIL released. on_cuda is a generic
// lambda: without CUDA it is never instantiated, so the twin's symbols are never referenced.
template <typename OnCpu, typename OnCuda>
void dispatch(Device dev, uintptr_t stream, const OnCpu& on_cpu, const OnCuda& on_cuda) {
  py::gil_scoped_release release;
  if (dev == Device::kCpu) return on_cpu();
  if constexpr (OSS_FAST_WITH_CUDA) on_cuda(reinterpret_cast<void*>(stream));
}

// Each def_* registers one function in module m for the given device; the CUDA variants take one
// extra trailing argument, the stream address.
void def_reduce(py::module_& m, Device dev) {
  auto body = [dev](uintptr_t costs, uintptr_t cand, int64_t G, int64_t M, int64_t J, uintptr_t min_out,
                    uintptr_t arg_out, uintptr_t stream) {
    check_size("G", G, 0);
    check_size("M", M, 0);
    check_size("J", J, 1);
    auto c = address<const double>("costs", costs, G * M * J, dev);
    auto i = address<const int64_t>("cand", cand, G * M, dev);
    auto mn = address<double>("min_out", min_out, G * J, dev);
    auto ar = address<int64_t>("arg_out", arg_out, G * J, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::reduce_candidates(c, i, G, M, J, mn, ar); },
             [&](auto st) { oss_fast::cuda::reduce_candidates(c, i, G, M, J, mn, ar, st); });
  };
  m.def("reduce_candidates", body, py::arg("costs"), py::arg("cand"), py::arg("G"), py::arg("M"),
        py::arg("J"), py::arg("min_out"), py::arg("arg_out"), py::arg("stream") = 0,
        "Per-target min/argmin of costs [G,M,J] over candidates cand [G,M] with the tie rule.");
}

void def_level_update(py::module_& m, Device dev) {
  auto body = [dev](int mode, uintptr_t min_in, uintptr_t arg_in, uintptr_t best, uintptr_t from,
                    uintptr_t improved, int64_t G, int64_t J, int64_t K, int64_t k, uintptr_t stream) {
    check_mode(mode);
    check_size("G", G, 0);
    check_size("J", J, 1);
    check_size("K", K, 1);
    if (k < 0 || k >= K) fail("k (the level) must be in [0, K), got " + std::to_string(k));
    auto mn = address<const double>("min_in", min_in, G * J, dev);
    auto ar = address<const int64_t>("arg_in", arg_in, G * J, dev);
    auto b = address<double>("best", best, G * J, dev);
    auto f = address<int64_t>("from", from, G * (K + 1) * J, dev);
    auto im = address<uint8_t>("improved", improved, G * J, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::level_update(mode, mn, ar, b, f, im, G, J, K, k); },
             [&](auto st) { oss_fast::cuda::level_update(mode, mn, ar, b, f, im, G, J, K, k, st); });
  };
  m.def("level_update", body, py::arg("mode"), py::arg("min_in"), py::arg("arg_in"), py::arg("best"),
        py::arg("from_"), py::arg("improved"), py::arg("G"), py::arg("J"), py::arg("K"), py::arg("k"),
        py::arg("stream") = 0, "Apply level k's per-target winners to best/from; mark improved targets.");
}

void def_traceback(py::module_& m, Device dev) {
  auto body = [dev](uintptr_t from, int64_t G, int64_t K, int64_t J, uintptr_t path, uintptr_t stream) {
    check_size("G", G, 0);
    check_size("K", K, 1);
    check_size("J", J, 1);
    auto f = address<const int64_t>("from", from, G * (K + 1) * J, dev);
    auto p = address<int64_t>("path", path, G * K, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::traceback(f, G, K, J, p); },
             [&](auto st) { oss_fast::cuda::traceback(f, G, K, J, p, st); });
  };
  m.def("traceback", body, py::arg("from_"), py::arg("G"), py::arg("K"), py::arg("J"), py::arg("path"),
        py::arg("stream") = 0, "Follow from [G,K+1,J] back from grid index 0; path [G,K] ascending.");
}

void def_kstep_path(py::module_& m, Device dev) {
  auto body = [dev](uintptr_t cost, int64_t G, int64_t J, int64_t K, int objective, uintptr_t path,
                    uintptr_t value, uintptr_t stream) {
    check_objective(objective);
    check_size("G", G, 0);
    check_size("J", J, 2);
    check_size("K", K, 1);
    if (K > J - 1) fail("K must be <= N = J - 1 (" + std::to_string(J - 1) + "), got " + std::to_string(K));
    auto c = address<const double>("cost", cost, G * J * J, dev);
    auto p = address<int64_t>("path", path, G * K, dev);
    auto v = address<double>("value", value, G, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::kstep_path(c, G, J, K, objective, p, v); },
             [&](auto st) { oss_fast::cuda::kstep_path(c, G, J, K, objective, p, v, st); });
  };
  m.def("kstep_path", body, py::arg("cost"), py::arg("G"), py::arg("J"), py::arg("K"), py::arg("objective"),
        py::arg("path"), py::arg("value"), py::arg("stream") = 0,
        "Shortest path of exactly K edges from N = J-1 to 0 over cost [G,J,J] (sum or max objective).");
}

void def_median(py::module_& m, Device dev) {
  auto body = [dev](uintptr_t steps, int64_t S, int64_t K, uintptr_t out, uintptr_t stream) {
    check_size("S", S, 1);
    check_size("K", K, 1);
    auto s = address<const int64_t>("steps", steps, S * K, dev);
    auto o = address<int64_t>("out", out, K, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::median_steps(s, S, K, o); },
             [&](auto st) { oss_fast::cuda::median_steps(s, S, K, o, st); });
  };
  m.def("median_steps", body, py::arg("steps"), py::arg("S"), py::arg("K"), py::arg("out"),
        py::arg("stream") = 0, "Per-position median of steps [S,K] with the published cal_medium rule.");
}

void def_all(py::module_& m, Device dev) {
  def_reduce(m, dev);
  def_level_update(m, dev);
  def_traceback(m, dev);
  def_kstep_path(m, dev);
  def_median(m, dev);
}

void def_euler_costs(py::module_& m) {
  auto body = [](uintptr_t x, uintptr_t v, uintptr_t targets, uintptr_t row_sample, uintptr_t row_grid,
                 uintptr_t s, int64_t R, int64_t D, int64_t J, int64_t S, int64_t B, int norm, uintptr_t bound,
                 uintptr_t out) {
    check_size("R", R, 0);
    check_size("D", D, 1);
    check_size("J", J, 1);
    check_size("S", S, 2);
    if (J > S) fail("J (targets) must be <= S (grid length)");
    check_size("B", B, 1);
    if (norm != 1 && norm != 2) fail("norm must be 1 or 2, got " + std::to_string(norm));
    const Device dev = Device::kCpu;
    auto xp = address<const float>("x", x, R * D, dev);
    auto vp = address<const float>("v", v, R * D, dev);
    auto tp = address<const float>("targets", targets, J * B * D, dev);
    auto sample = address<const int64_t>("row_sample", row_sample, R, dev);
    auto grid = address<const int64_t>("row_grid", row_grid, R, dev);
    auto sp = address<const double>("s", s, S, dev);
    auto op = address<double>("out", out, R * J, dev);
    auto bp = bound ? address<const double>("bound", bound, B * J, dev) : nullptr;
    for (int64_t r = 0; r < R; ++r) {
      if (sample[r] < 0 || sample[r] >= B) fail("row_sample values must lie in [0, B)");
      if (grid[r] < 1 || grid[r] >= S) fail("row_grid values must lie in [1, S)");
    }
    py::gil_scoped_release release;
    oss_fast::cpu::euler_costs_f32(xp, vp, tp, sample, grid, sp, R, D, J, B, norm, bp, op);
  };
  m.def("euler_costs_f32", body, py::arg("x"), py::arg("v"), py::arg("targets"), py::arg("row_sample"),
        py::arg("row_grid"), py::arg("s"), py::arg("R"), py::arg("D"), py::arg("J"), py::arg("S"), py::arg("B"),
        py::arg("norm"), py::arg("bound"), py::arg("out"),
        "Fused Euler-jump costs [R, J] of float32 rows x, v [R, D] against targets [J, B, D]; "
        "bound [B, J] (0 = none): pairs already >= their bound may report +inf.");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "oss_fast pathfinding core (C++ with an optional CUDA twin)";
  py::module_ cpu = m.def_submodule("cpu", "CPU implementations");
  def_all(cpu, Device::kCpu);
  def_euler_costs(cpu);
#if OSS_FAST_WITH_CUDA
  py::module_ cuda = m.def_submodule("cuda", "CUDA twins (device pointers, explicit stream)");
  def_all(cuda, Device::kCuda);
#endif
  m.def("build_info", []() {
    py::dict info;
    info["version"] = OSS_FAST_VERSION;
    info["built_with_cuda"] = bool(OSS_FAST_WITH_CUDA);
#if OSS_FAST_WITH_CUDA
    info["cuda_device_count"] = oss_fast::cuda::device_count();
#else
    info["cuda_device_count"] = 0;
#endif
#ifdef _OPENMP
    info["openmp"] = true;
#else
    info["openmp"] = false;
#endif
    return info;
  });
}
