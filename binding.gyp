# node-gyp build of the addon: what `npm run prebuild` (prebuildify) and node-gyp-build's
# fallback compile. The sources come from sources.json, the list CMakeLists.txt reads too;
# gyp files are Python literals and cannot read JSON, so node expands the list (commands in
# <!@(...) run in this file's directory).
{
  "targets": [
    {
      "target_name": "mlpkit",
      "sources": [
        "<!@(node -p \"const s = require('./sources.json'); s.core.concat(s.addon).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node -p \"require('./sources.json').include_dirs.join(' ')\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "MLPKIT_VERSION=<!(node -p \"require('./package.json').version\")"
      ],
      # Node's common.gypi turns exceptions and RTTI off and picks gnu++17; the core uses
      # exceptions, and ISO mode keeps -ffp-contract=off as in the CMake build.
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-frtti"],
      "cflags": ["-fvisibility=hidden"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "GCC_ENABLE_CPP_RTTI": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      },
      "msvs_settings": {
        "VCCLCompilerTool": {
          "ExceptionHandling": 1,
          "AdditionalOptions": ["/std:c++17"]
        }
      }
    }
  ]
}
