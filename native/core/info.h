// What this build of the core is: version, compiler, and the kernels chosen for this CPU.
#pragma once

namespace mlpkit {

struct BuildInfo {
  const char* version;   // the package version, from package.json at build time
  const char* compiler;  // e.g. "gcc 12.2.0"
  const char* isa;       // the CPU kernels in use: "scalar", "avx2", "avx512" or "neon"
  int threads;           // threads one call may use (set_thread_count)
};

BuildInfo build_info();

}  // namespace mlpkit
