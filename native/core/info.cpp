#include "core/info.h"

#include "core/cpu/kernels.h"
#include "core/parallel.h"

// Both build systems pass the version unquoted (-DMLPKIT_VERSION=0.1.0), which survives every
// generator's quoting rules; it is turned into a string here.
#define MLPKIT_STRINGIFY_(x) #x
#define MLPKIT_STRINGIFY(x) MLPKIT_STRINGIFY_(x)
#ifdef MLPKIT_VERSION
#define MLPKIT_VERSION_STRING MLPKIT_STRINGIFY(MLPKIT_VERSION)
#else
#define MLPKIT_VERSION_STRING "0.0.0-unknown"
#endif

#if defined(__clang__)
#define MLPKIT_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define MLPKIT_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define MLPKIT_COMPILER "msvc " MLPKIT_STRINGIFY(_MSC_FULL_VER)
#else
#define MLPKIT_COMPILER "unknown"
#endif

namespace mlpkit {

BuildInfo build_info() {
  return BuildInfo{MLPKIT_VERSION_STRING, MLPKIT_COMPILER, cpu::kernels().isa, thread_count()};
}

}  // namespace mlpkit
