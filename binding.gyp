# node-gyp build of the addon: what `npm run prebuild` (prebuildify) and node-gyp-build's
# fallback compile. The sources come from sources.json, the list CMakeLists.txt reads too;
# gyp files are Python literals and cannot read JSON, so node expands the list (commands in
# <!@(...) run in this file's directory). gyp has no per-file flags, so each ISA's kernels are
# a static library of their own with that ISA's flags; the rest is built for the baseline CPU.
{
  "target_defaults": {
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
    # exceptions. No FMA contraction, as in the CMake build: the kernels state their rounding.
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-frtti", "-ffp-contract=off"],
    "cflags": ["-fvisibility=hidden"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "GCC_ENABLE_CPP_RTTI": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-ffp-contract=off"],
      "GCC_OPTIMIZATION_LEVEL": "3",
      "MACOSX_DEPLOYMENT_TARGET": "11.0"
    },
    "msvs_settings": {
      "VCCLCompilerTool": {
        "ExceptionHandling": 1,
        "AdditionalOptions": ["/std:c++17"]
      }
    }
  },
  "targets": [
    {
      "target_name": "mlpkit_avx2",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./sources.json').isa_avx2.join(' ')\")"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags": ["-mavx2", "-mfma"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx2", "-mfma"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX2"] } }
        }]
      ]
    },
    {
      "target_name": "mlpkit_avx512",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./sources.json').isa_avx512.join(' ')\")"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags": ["-mavx512f", "-mavx2", "-mfma"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx512f", "-mavx2", "-mfma"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        }]
      ]
    },
    {
      "target_name": "mlpkit_avx512vnni",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./sources.json').isa_avx512vnni.join(' ')\")"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mavx2", "-mfma"],
          "xcode_settings": { "OTHER_CFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mavx2", "-mfma"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        }]
      ]
    },
    {
      "target_name": "mlpkit_neon",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./sources.json').isa_neon.join(' ')\")"]
    },
    {
      "target_name": "mlpkit_neon_dotprod",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./sources.json').isa_neon_dotprod.join(' ')\")"],
      "conditions": [
        ["target_arch=='arm64' and OS!='win'", {
          "cflags": ["-march=armv8.2-a+dotprod"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-march=armv8.2-a+dotprod"] }
        }]
      ]
    },
    {
      "target_name": "mlpkit",
      "dependencies": ["mlpkit_avx2", "mlpkit_avx512", "mlpkit_avx512vnni", "mlpkit_neon", "mlpkit_neon_dotprod"],
      # node-gyp compiles against node's full headers, libuv's among them: the native socket path.
      "conditions": [["OS!='win'", { "defines": ["MLPKIT_SOCKET_PATH=1"] }]],
      "sources": [
        "<!@(node -p \"const s = require('./sources.json'); s.core.concat(s.addon).join(' ')\")"
      ]
    }
  ]
}
