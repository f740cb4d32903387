// Chooses the backend. MLPKIT_BACKEND=native|reference|cuda forces one; the default ('auto')
// uses the native addon when it loads and otherwise the reference, with a single warning. Float
// models (Mlp) may also run on CUDA: their 'auto' picks it first when the CUDA addon loads and
// reports a usable device (selectModelBackend); quantised models and layers stay on the CPU
// backends (selectBackend).

import { ERR_CUDA_UNAVAILABLE, ERR_NATIVE_UNAVAILABLE } from '../errors.js';
import { cudaBackend, cudaInfo } from './cuda.js';
import { createNativeBackend, loadNative, nativeLoadError } from './native.js';
import { referenceBackend } from './reference/index.js';
import { setNativeQuantizerLoader } from '../quant/quantize.js';
import { setHugePageLoader } from '../huge-pages.js';
import type { Backend } from './types.js';

export type BackendChoice = 'auto' | 'native' | 'reference';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'native', 'reference'];
/** The choices of a float model: the CPU backends, or 'cuda'. */
export type ModelBackendChoice = BackendChoice | 'cuda';
export const MODEL_BACKEND_CHOICES: readonly ModelBackendChoice[] = ['auto', 'native', 'reference', 'cuda'];

let nativeBackend: Backend | null = null;
let warned = false;

let warnedEnv = false;
let warnedIsa = false;

function envChoice(): ModelBackendChoice {
  const raw = (process.env.MLPKIT_BACKEND ?? 'auto').trim().toLowerCase();
  if (raw === 'native' || raw === 'reference' || raw === 'cuda' || raw === 'auto') return raw;
  // A typo here would otherwise pick a backend quietly: say so once, and go on with 'auto'.
  if (!warnedEnv && raw !== '') {
    warnedEnv = true;
    process.emitWarning(`MLPKIT_BACKEND='${process.env.MLPKIT_BACKEND}' is not one of ${MODEL_BACKEND_CHOICES.join(', ')}; using 'auto'`, {
      code: 'MLPKIT_UNKNOWN_ENV',
    });
  }
  return 'auto';
}

/** MLPKIT_ISA names a kernel set to force (native/core/cpu/dispatch.cpp); one this CPU cannot run is ignored there. */
function checkIsaEnv(backend: Backend): void {
  const want = process.env.MLPKIT_ISA;
  if (warnedIsa || want === undefined || want === '') return;
  const { isa, isas } = backend.info();
  if (isas && !isas.includes(want)) {
    warnedIsa = true;
    process.emitWarning(`MLPKIT_ISA='${want}' is not one of the kernel sets this CPU runs (${isas.join(', ')}); using ${isa}`, {
      code: 'MLPKIT_UNKNOWN_ENV',
    });
  }
}

function cudaUnavailable(): Error {
  const err = new Error(
    `mlpkit: the cuda backend was requested but no CUDA device can be used (${cudaInfo().reason ?? 'unknown reason'}). ` +
      'It needs the CUDA addon (`npm run build:cuda`, with the CUDA toolkit), an NVIDIA GPU of compute capability 8.0 ' +
      "or newer and its driver; backend 'native' runs the same model on the CPU.",
  );
  Object.defineProperty(err, 'code', { value: ERR_CUDA_UNAVAILABLE, enumerable: true });
  return err;
}

// What builds the addon where mlpkit is installed as a dependency (node-gyp through the install
// script; cmake-js is only a devDependency), and in a checkout of mlpkit itself.
const BUILD_HINT = 'Build it with `npm rebuild mlpkit` (needs Python 3, make and a C++17 compiler; ' +
  'in a checkout of mlpkit, `npm run build`)';

function unavailable(): Error {
  const reason = nativeLoadError()?.message ?? 'unknown reason';
  const err = new Error(
    `mlpkit: the native backend was requested but did not load (${reason}). ` +
      `${BUILD_HINT}, or use the reference backend.`,
  );
  Object.defineProperty(err, 'code', { value: ERR_NATIVE_UNAVAILABLE, enumerable: true });
  return err;
}

// The first quantisation loads the addon, whichever backend will run the model: creating the
// native backend installs its weight quantisers (lib/quant/quantize.ts), which give the same
// bytes as the TypeScript ones. MLPKIT_BACKEND=reference keeps native code out (unless a native
// model was created anyway).
setNativeQuantizerLoader(() => {
  if (envChoice() !== 'reference') getNative();
});
// Likewise for the huge-page offer of large arrays (lib/huge-pages.ts), which a file read needs
// before any model picks its backend.
setHugePageLoader(() => {
  if (envChoice() !== 'reference') getNative();
});

function getNative(): Backend | null {
  if (nativeBackend) return nativeBackend;
  const mod = loadNative();
  if (mod) {
    nativeBackend = createNativeBackend(mod);
    checkIsaEnv(nativeBackend);
  }
  return nativeBackend;
}

/**
 * The backend for a float model (Mlp): its own choice first, then MLPKIT_BACKEND, then auto,
 * which takes cuda when a usable device is present and otherwise what selectBackend picks.
 */
export function selectModelBackend(choice: ModelBackendChoice = 'auto', { warn = true } = {}): Backend {
  const effective = choice === 'auto' ? envChoice() : choice;
  if (effective === 'cuda' || effective === 'auto') {
    const cuda = cudaBackend();
    if (cuda) return cuda;
    if (effective === 'cuda') throw cudaUnavailable();
  }
  return selectBackend(effective, { warn });
}

/** The CPU backend for a model: the model's own choice first, then MLPKIT_BACKEND, then auto. */
export function selectBackend(choice: BackendChoice = 'auto', { warn = true } = {}): Backend {
  const env = choice === 'auto' ? envChoice() : choice;
  const effective = env === 'cuda' ? 'auto' : env;  // MLPKIT_BACKEND=cuda: CPU work stays on 'auto'
  if (effective === 'reference') return referenceBackend;
  const native = getNative();
  if (native) return native;
  if (effective === 'native') throw unavailable();
  if (warn && !warned) {
    warned = true;
    process.emitWarning(
      `native addon not loaded (${nativeLoadError()?.message ?? 'unknown reason'}); ` +
        `using the pure-TypeScript reference backend, which is much slower. ${BUILD_HINT}.`,
      { code: 'MLPKIT_REFERENCE_FALLBACK' },
    );
  }
  return referenceBackend;
}

/** True when the native addon loads (whatever MLPKIT_BACKEND says). */
export function nativeAvailable(): boolean {
  return getNative() !== null;
}

/** True when backend 'cuda' can be used (the CUDA addon loads and reports a usable device). */
export function cudaAvailable(): boolean {
  return cudaBackend() !== null;
}

export { cudaInfo, nativeLoadError };
export { referenceBackend };
