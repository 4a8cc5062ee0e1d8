// Python entry points of the pathfinding core. Arrays arrive as DLPack capsules
// (torch.utils.dlpack.to_dlpack), never as bare addresses: each carries its producer's pointer,
// dtype, device, shape and strides. oss_fast/dp.py checks dtypes, devices, shapes and contiguity
// first; these entry points check again, from the capsule: dtype, device, contiguity and that the
// element count equals what the sizes passed need (computed without overflow), plus enum values.
// They raise ValueError naming the argument, so a bad call never reaches a kernel. Work runs with
// the GIL released; the capsules are only read, their owners keep the memory alive.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <climits>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cost.h"
#include "dlpack_abi.h"
#include "dp.h"

namespace py = pybind11;
using oss_fast::kCompat;
using oss_fast::kExact;
using oss_fast::kMax;
using oss_fast::kSum;

namespace {

enum class Device { kCpu, kCuda };
using Buffer = py::object;  // a DLPack capsule

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

void check_size(const char* name, int64_t v, int64_t min, int64_t max = INT64_MAX) {
  if (v < min) fail(std::string(name) + " must be >= " + std::to_string(min) + ", got " + std::to_string(v));
  if (v > max) fail(std::string(name) + " must be <= " + std::to_string(max) + ", got " + std::to_string(v));
}

// The product of sizes (all checked >= 0 before), or a ValueError naming what it is for.
int64_t elements(const char* name, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    if (__builtin_mul_overflow(n, d, &n)) fail(std::string(name) + ": its sizes overflow int64");
  return n;
}

template <typename T>
constexpr oss_fast::dlpack::DataType dtype_of() {
  using oss_fast::dlpack::DataType;
  if constexpr (std::is_same_v<T, double>) return DataType{oss_fast::dlpack::kFloat, 64, 1};
  if constexpr (std::is_same_v<T, float>) return DataType{oss_fast::dlpack::kFloat, 32, 1};
  if constexpr (std::is_same_v<T, int64_t>) return DataType{oss_fast::dlpack::kInt, 64, 1};
  return DataType{oss_fast::dlpack::kUInt, 8, 1};  // uint8_t
}

// The array's data as T* after checking the capsule: a DLPack tensor of T on the device, compact
// row-major, holding exactly `count` elements.
template <typename T>
T* address(const char* name, const Buffer& capsule, int64_t count, Device device) {
  const std::string who(name);
  if (!PyCapsule_CheckExact(capsule.ptr()) || !PyCapsule_IsValid(capsule.ptr(), "dltensor"))
    fail(who + " must be a DLPack capsule (torch.utils.dlpack.to_dlpack of a tensor)");
  const auto* managed = static_cast<oss_fast::dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  const oss_fast::dlpack::Tensor& t = managed->dl_tensor;
  const auto want = dtype_of<std::remove_const_t<T>>();
  if (t.dtype.code != want.code || t.dtype.bits != want.bits || t.dtype.lanes != 1)
    fail(who + " has the wrong dtype for this function");
  const int32_t want_device = device == Device::kCpu ? oss_fast::dlpack::kCPU : oss_fast::dlpack::kCUDA;
  if (t.device.device_type != want_device)
    fail(who + (device == Device::kCpu ? " must be a CPU tensor" : " must be a CUDA tensor"));
  if (t.ndim < 0 || (t.ndim > 0 && t.shape == nullptr)) fail(who + " has no shape");
  int64_t n = 1;
  for (int32_t d = 0; d < t.ndim; ++d) {
    if (t.shape[d] < 0) fail(who + " has a negative size");
    if (__builtin_mul_overflow(n, t.shape[d], &n)) fail(who + ": its sizes overflow");
  }
  if (t.strides && n > 0) {  // compact row-major (the strides of dimensions of size 1 do not matter)
    int64_t stride = 1;
    for (int32_t d = t.ndim - 1; d >= 0; --d) {
      if (t.shape[d] > 1 && t.strides[d] != stride) fail(who + " must be contiguous");
      stride *= t.shape[d];
    }
  }
  if (n != count)
    fail(who + " holds " + std::to_string(n) + " elements but the sizes given need " + std::to_string(count));
  auto* data = static_cast<char*>(t.data) + t.byte_offset;
  if (count > 0 && data == nullptr) fail(who + " is a null pointer");
  if (reinterpret_cast<uintptr_t>(data) % alignof(T) != 0) fail(who + " is not aligned for its dtype");
  return reinterpret_cast<T*>(data);
}

void check_mode(int mode) {
  if (mode != kCompat && mode != kExact) fail("mode must be 0 (compat) or 1 (exact), got " + std::to_string(mode));
}

void check_objective(int objective) {
  if (objective != kSum && objective != kMax) fail("objective must be 0 (sum) or 1 (max), got " + std::to_string(objective));
}

// The rows' samples in [0, B) and grid indices in [1, S) (the kernels index with them).
void check_rows(const int64_t* sample, const int64_t* grid, int64_t R, int64_t B, int64_t S) {
  for (int64_t r = 0; r < R; ++r) {
    if (sample[r] < 0 || sample[r] >= B) fail("row_sample values must lie in [0, B)");
    if (grid[r] < 1 || grid[r] >= S) fail("row_grid values must lie in [1, S)");
  }
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
  auto body = [dev](Buffer costs, Buffer cand, int64_t G, int64_t M, int64_t J, Buffer min_out, Buffer arg_out,
                    uintptr_t stream) {
    check_size("G", G, 0);
    check_size("M", M, 0);
    check_size("J", J, 1);
    auto c = address<const double>("costs", costs, elements("costs", {G, M, J}), dev);
    auto i = address<const int64_t>("cand", cand, elements("cand", {G, M}), dev);
    auto mn = address<double>("min_out", min_out, elements("min_out", {G, J}), dev);
    auto ar = address<int64_t>("arg_out", arg_out, elements("arg_out", {G, J}), dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::reduce_candidates(c, i, G, M, J, mn, ar); },
             [&](auto st) { oss_fast::cuda::reduce_candidates(c, i, G, M, J, mn, ar, st); });
  };
  m.def("reduce_candidates", body, py::arg("costs"), py::arg("cand"), py::arg("G"), py::arg("M"),
        py::arg("J"), py::arg("min_out"), py::arg("arg_out"), py::arg("stream") = 0,
        "Per-target min/argmin of costs [G,M,J] over candidates cand [G,M] with the tie rule.");
}

void def_level_update(py::module_& m, Device dev) {
  auto body = [dev](int mode, Buffer min_in, Buffer arg_in, Buffer best, Buffer from, Buffer improved, int64_t G,
                    int64_t J, int64_t K, int64_t k, uintptr_t stream) {
    check_mode(mode);
    check_size("G", G, 0);
    check_size("J", J, 1);
    check_size("K", K, 1, INT64_MAX - 1);
    if (k < 0 || k >= K) fail("k (the level) must be in [0, K), got " + std::to_string(k));
    const int64_t GJ = elements("best", {G, J});
    auto mn = address<const double>("min_in", min_in, GJ, dev);
    auto ar = address<const int64_t>("arg_in", arg_in, GJ, dev);
    auto b = address<double>("best", best, GJ, dev);
    auto f = address<int64_t>("from", from, elements("from", {G, K + 1, J}), dev);
    auto im = address<uint8_t>("improved", improved, GJ, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::level_update(mode, mn, ar, b, f, im, G, J, K, k); },
             [&](auto st) { oss_fast::cuda::level_update(mode, mn, ar, b, f, im, G, J, K, k, st); });
  };
  m.def("level_update", body, py::arg("mode"), py::arg("min_in"), py::arg("arg_in"), py::arg("best"),
        py::arg("from_"), py::arg("improved"), py::arg("G"), py::arg("J"), py::arg("K"), py::arg("k"),
        py::arg("stream") = 0, "Apply level k's per-target winners to best/from; mark improved targets.");
}

void def_traceback(py::module_& m, Device dev) {
  auto body = [dev](Buffer from, int64_t G, int64_t K, int64_t J, Buffer path, uintptr_t stream) {
    check_size("G", G, 0);
    check_size("K", K, 1, INT64_MAX - 1);
    check_size("J", J, 1);
    auto f = address<const int64_t>("from", from, elements("from", {G, K + 1, J}), dev);
    auto p = address<int64_t>("path", path, elements("path", {G, K}), dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::traceback(f, G, K, J, p); },
             [&](auto st) { oss_fast::cuda::traceback(f, G, K, J, p, st); });
  };
  m.def("traceback", body, py::arg("from_"), py::arg("G"), py::arg("K"), py::arg("J"), py::arg("path"),
        py::arg("stream") = 0, "Follow from [G,K+1,J] back from grid index 0; path [G,K] ascending.");
}

void def_kstep_path(py::module_& m, Device dev) {
  auto body = [dev](Buffer cost, int64_t G, int64_t J, int64_t K, int objective, Buffer path, Buffer value,
                    uintptr_t stream) {
    check_objective(objective);
    check_size("G", G, 0);
    check_size("J", J, 2);
    check_size("K", K, 1);
    if (K > J - 1) fail("K must be <= N = J - 1 (" + std::to_string(J - 1) + "), got " + std::to_string(K));
    auto c = address<const double>("cost", cost, elements("cost", {G, J, J}), dev);
    auto p = address<int64_t>("path", path, elements("path", {G, K}), dev);
    auto v = address<double>("value", value, G, dev);
    dispatch(dev, stream, [&] { oss_fast::cpu::kstep_path(c, G, J, K, objective, p, v); },
             [&](auto st) { oss_fast::cuda::kstep_path(c, G, J, K, objective, p, v, st); });
  };
  m.def("kstep_path", body, py::arg("cost"), py::arg("G"), py::arg("J"), py::arg("K"), py::arg("objective"),
        py::arg("path"), py::arg("value"), py::arg("stream") = 0,
        "Shortest path of exactly K edges from N = J-1 to 0 over cost [G,J,J] (sum or max objective).");
}

void def_median(py::module_& m, Device dev) {
  auto body = [dev](Buffer steps, int64_t S, int64_t K, Buffer out, uintptr_t stream) {
    check_size("S", S, 1);
    check_size("K", K, 1);
    auto s = address<const int64_t>("steps", steps, elements("steps", {S, K}), dev);
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

// The buffers every row-cost op shares, checked: rows x, v [R, D] (float32), targets [J, B, D], the
// rows' samples and grid indices [R] (grid indices in [1, S)), out [R, J] and an optional bound [B, J].
struct RowCostBuffers {
  const float *x, *v, *targets;
  const int64_t *sample, *grid;
  double* out;
  const double* bound;

  RowCostBuffers(const Buffer& x_, const Buffer& v_, const Buffer& targets_, const Buffer& row_sample,
                 const Buffer& row_grid, const Buffer& out_, const Buffer& bound_, int64_t R, int64_t D, int64_t J,
                 int64_t B, int64_t S, int norm) {
    check_size("R", R, 0);
    check_size("D", D, 1);
    check_size("J", J, 1);
    check_size("B", B, 1);
    if (norm != 1 && norm != 2) fail("norm must be 1 or 2, got " + std::to_string(norm));
    const Device dev = Device::kCpu;
    x = address<const float>("x", x_, elements("x", {R, D}), dev);
    v = address<const float>("v", v_, elements("v", {R, D}), dev);
    targets = address<const float>("targets", targets_, elements("targets", {J, B, D}), dev);
    sample = address<const int64_t>("row_sample", row_sample, R, dev);
    grid = address<const int64_t>("row_grid", row_grid, R, dev);
    out = address<double>("out", out_, elements("out", {R, J}), dev);
    bound = bound_.is_none() ? nullptr : address<const double>("bound", bound_, elements("bound", {B, J}), dev);
    check_rows(sample, grid, R, B, S);
  }
};

void def_euler_costs(py::module_& m) {
  auto body = [](Buffer x, Buffer v, Buffer targets, Buffer row_sample, Buffer row_grid, Buffer s, int64_t R,
                 int64_t D, int64_t J, int64_t S, int64_t B, int norm, Buffer bound, Buffer out) {
    check_size("S", S, 2);
    if (J > S) fail("J (targets) must be <= S (grid length)");
    const RowCostBuffers b(x, v, targets, row_sample, row_grid, out, bound, R, D, J, B, S, norm);
    auto sp = address<const double>("s", s, S, Device::kCpu);
    py::gil_scoped_release release;
    oss_fast::cpu::euler_costs_f32(b.x, b.v, b.targets, b.sample, b.grid, sp, R, D, J, B, norm, b.bound, b.out);
  };
  m.def("euler_costs_f32", body, py::arg("x"), py::arg("v"), py::arg("targets"), py::arg("row_sample"),
        py::arg("row_grid"), py::arg("s"), py::arg("R"), py::arg("D"), py::arg("J"), py::arg("S"), py::arg("B"),
        py::arg("norm"), py::arg("bound"), py::arg("out"),
        "Fused Euler-jump costs [R, J] of float32 rows x, v [R, D] against targets [J, B, D]; "
        "bound [B, J] (None = none): pairs already >= their bound may report +inf.");
}

void def_combo_costs(py::module_& m) {
  auto body = [](Buffer x, Buffer v, Buffer hist, Buffer coef, Buffer targets, Buffer row_sample, Buffer row_grid,
                 int64_t R, int64_t D, int64_t J, int64_t B, int64_t H, int norm, Buffer bound, Buffer out) {
    const RowCostBuffers b(x, v, targets, row_sample, row_grid, out, bound, R, D, J, B, INT64_MAX, norm);
    check_size("H", H, 0, 3);
    auto hp = address<const double>("hist", hist, elements("hist", {R, H, D}), Device::kCpu);
    auto cp = address<const double>("coef", coef, elements("coef", {R, J, 2 + H}), Device::kCpu);
    py::gil_scoped_release release;
    oss_fast::cpu::combo_costs_f32(b.x, b.v, hp, cp, b.targets, b.sample, b.grid, R, D, J, B, H, norm, b.bound,
                                   b.out);
  };
  m.def("combo_costs_f32", body, py::arg("x"), py::arg("v"), py::arg("hist"), py::arg("coef"), py::arg("targets"),
        py::arg("row_sample"), py::arg("row_grid"), py::arg("R"), py::arg("D"), py::arg("J"), py::arg("B"),
        py::arg("H"), py::arg("norm"), py::arg("bound"), py::arg("out"),
        "Multistep jump costs [R, J]: the float64 combination of x, v [R, D] and hist [R, H, D] with "
        "coef [R, J, 2 + H], rounded to float32, against targets [J, B, D].");
}

// Whether two arrays of bytes overlap.
bool overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto* p = static_cast<const char*>(a);
  const auto* q = static_cast<const char*>(b);
  return a_bytes > 0 && b_bytes > 0 && p < q + b_bytes && q < p + a_bytes;
}

void def_step_rows(py::module_& m) {
  auto body = [](Buffer x, Buffer v, Buffer hist, Buffer src, Buffer M, Buffer dst, int64_t W, int64_t R,
                 int64_t S, int64_t D, int64_t H, Buffer out_x, Buffer out_h) {
    check_size("W", W, 0);
    check_size("R", R, 0);
    check_size("S", S, 0);
    check_size("D", D, 1);
    check_size("H", H, 0, 3);
    const Device dev = Device::kCpu;
    auto xp = address<const float>("x", x, elements("x", {R, D}), dev);
    auto vp = address<const float>("v", v, elements("v", {R, D}), dev);
    auto hp = address<const double>("hist", hist, elements("hist", {R, H, D}), dev);
    auto sp = address<const int64_t>("src", src, W, dev);
    auto mp = address<const double>("M", M, elements("M", {W, 1 + H, 2 + H}), dev);
    auto dp = address<const int64_t>("dst", dst, W, dev);
    auto oxp = address<float>("out_x", out_x, elements("out_x", {S, D}), dev);
    auto ohp = address<double>("out_h", out_h, elements("out_h", {S, H, D}), dev);
    std::vector<char> written(static_cast<size_t>(S), 0);
    for (int64_t w = 0; w < W; ++w) {
      if (sp[w] < 0 || sp[w] >= R) fail("src values must lie in [0, R)");
      if (dp[w] < 0 || dp[w] >= S) fail("dst values must lie in [0, S)");
      if (written[dp[w]]++) fail("dst must not repeat a row");
    }
    const int64_t in_x = R * D * 4, in_h = R * H * D * 8, o_x = S * D * 4, o_h = S * H * D * 8;
    if (overlap(oxp, o_x, xp, in_x) || overlap(oxp, o_x, vp, in_x) || overlap(ohp, o_h, hp, in_h) ||
        overlap(oxp, o_x, hp, in_h) || overlap(ohp, o_h, xp, in_x) || overlap(ohp, o_h, vp, in_x))
      fail("out_x and out_h must not overlap x, v or hist");
    py::gil_scoped_release release;
    oss_fast::cpu::step_rows_f32(xp, vp, hp, sp, mp, dp, W, D, H, oxp, ohp);
  };
  m.def("step_rows_f32", body, py::arg("x"), py::arg("v"), py::arg("hist"), py::arg("src"), py::arg("M"),
        py::arg("dst"), py::arg("W"), py::arg("R"), py::arg("S"), py::arg("D"), py::arg("H"), py::arg("out_x"),
        py::arg("out_h"),
        "One multistep step of rows src [W] of float32 x, v [R, D] with history hist [R, H, D] and step matrices "
        "M [W, 1 + H, 2 + H]: the new states (float32) into rows dst of out_x [S, D], the new history (float64) "
        "into rows dst of out_h [S, H, D].");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "oss_fast pathfinding core (C++ with an optional CUDA twin); arrays are DLPack capsules";
  py::module_ cpu = m.def_submodule("cpu", "CPU implementations");
  def_all(cpu, Device::kCpu);
  def_euler_costs(cpu);
  def_combo_costs(cpu);
  def_step_rows(cpu);
#if OSS_FAST_WITH_CUDA
  py::module_ cuda = m.def_submodule("cuda", "CUDA twins (CUDA tensors, explicit stream)");
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
