#include "core/cuda/device.h"

#include <mutex>
#include <stdexcept>
#include <string>

#include "core/cuda/kernels.cuh"

#ifndef MLPKIT_CUDA_ARCHITECTURES
#define MLPKIT_CUDA_ARCHITECTURES "unknown"
#endif

namespace mlpkit::cuda {

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  // Clear a non-sticky error so the next call does not report it again.
  (void)cudaGetLastError();
  std::string message = std::string("CUDA error ") + cudaGetErrorName(error) + " (" + std::to_string(static_cast<int>(error)) +
                        "): " + cudaGetErrorString(error) + " in " + call + " at " + file + ":" + std::to_string(line);
  if (error == cudaErrorMemoryAllocation) message = "out of GPU memory: " + message;
  throw std::runtime_error(message);
}

void check_launch(const char* kernel) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) throw_cuda_error(error, kernel, "kernel launch", 0);
}

const char* compiled_architectures() { return MLPKIT_CUDA_ARCHITECTURES; }

namespace {

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

}  // namespace

namespace {

Status probe() {
  Status s;
  cudaRuntimeGetVersion(&s.runtime_version);
  // Returns 0 (and success) when libcuda.so.1 cannot be loaded.
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess || s.driver_version == 0) {
    (void)cudaGetLastError();
    s.driver_version = 0;
    s.error = "no CUDA driver (libcuda.so.1 could not be loaded; install the NVIDIA driver)";
    return s;
  }
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (e == cudaErrorNoDevice) {
      s.error = "no CUDA device";
    } else if (e == cudaErrorInsufficientDriver) {
      s.error = "the CUDA driver (" + version_text(s.driver_version) + ") is older than this build's CUDA runtime (" +
                version_text(s.runtime_version) + "): update the driver or rebuild with an older toolkit";
    } else {
      s.error = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    }
    return s;
  }
  bool any = false;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    DeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.major = p.major;
    d.minor = p.minor;
    d.memory_bytes = p.totalGlobalMem;
    d.multiprocessors = p.multiProcessorCount;
    d.supported = p.major >= kMinComputeMajor;
    any = any || d.supported;
    s.devices.push_back(d);
  }
  if (count == 0) {
    s.error = "no CUDA device";
  } else if (!any) {
    s.error = "no CUDA device of compute capability " + std::to_string(kMinComputeMajor) +
              ".0 or newer (this build has code for the architectures " + std::string(compiled_architectures()) + ")";
  }
  return s;
}

}  // namespace

Status query_status() {
  // Devices do not come and go within a process; probing costs a cudaGetDeviceProperties per
  // device, so it happens once.
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] { status = probe(); });
  return status;
}

void require_device(int index) {
  const Status s = query_status();
  if (s.driver_version == 0 || (s.devices.empty() && !s.error.empty())) throw std::runtime_error(s.error);
  for (const DeviceInfo& d : s.devices) {
    if (d.index != index) continue;
    if (!d.supported) {
      throw std::runtime_error("CUDA device " + std::to_string(index) + " (" + d.name + ", compute capability " +
                               std::to_string(d.major) + "." + std::to_string(d.minor) + ") is older than sm_" +
                               std::to_string(kMinComputeMajor) + "0");
    }
    return;
  }
  throw std::out_of_range("CUDA device " + std::to_string(index) + " does not exist (" +
                          std::to_string(s.devices.size()) + " device(s))");
}

}  // namespace mlpkit::cuda
