// What CUDA this process can use: the runtime linked in, the driver found (if any), and the
// devices. Plain C++ (no CUDA headers), so the N-API layer compiles with the host compiler.
//
// The CUDA runtime is linked statically and opens the driver (libcuda.so.1) only on the first
// CUDA call, so loading mlpkit_cuda.node never fails for want of a driver: query_status() says
// "no CUDA driver" instead.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mlpkit::cuda {

// The oldest compute capability this build has code for (sm_80: the fused kernels use bf16
// tensor-core fragments, which need Ampere).
constexpr int kMinComputeMajor = 8;

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;         // compute capability
  std::size_t memory_bytes = 0;
  int multiprocessors = 0;
  bool supported = false;           // major >= kMinComputeMajor
};

struct Status {
  int runtime_version = 0;  // e.g. 13000 for CUDA 13.0
  int driver_version = 0;   // 0 when no driver could be loaded
  std::vector<DeviceInfo> devices;
  // Empty when at least one supported device is present; otherwise why none can be used.
  std::string error;
};

// Never throws (errors are reported in Status::error). The first call initialises the runtime
// and probes the devices; later calls return the same answer.
Status query_status();

// The architectures compiled in, as CMake lists them ("80;90").
const char* compiled_architectures();

// Throws std::runtime_error naming the reason when `index` is not a usable device.
void require_device(int index);

}  // namespace mlpkit::cuda
