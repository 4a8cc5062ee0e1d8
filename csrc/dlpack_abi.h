// The parts of the DLPack exchange ABI (unversioned "dltensor" capsules, as
// torch.utils.dlpack.to_dlpack makes them) that the entry points read, declared from the DLPack
// specification. Only the layout matters: these structs must match the producer's byte for byte.
#pragma once
#include <cstdint>

namespace oss_fast {
namespace dlpack {

enum DeviceType : int32_t { kCPU = 1, kCUDA = 2 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2 };

struct Device {
  int32_t device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

}  // namespace dlpack
}  // namespace oss_fast
