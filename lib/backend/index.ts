// Chooses the backend. MLPKIT_BACKEND=native|reference forces one; the default ('auto') uses
// the native addon when it loads and otherwise the reference, with a single warning.

import { ERR_NATIVE_UNAVAILABLE } from '../errors.js';
import { createNativeBackend, loadNative, nativeLoadError } from './native.js';
import { referenceBackend } from './reference/index.js';
import type { Backend } from './types.js';

export type BackendChoice = 'auto' | 'native' | 'reference';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'native', 'reference'];

let nativeBackend: Backend | null = null;
let warned = false;

function envChoice(): BackendChoice {
  const raw = (process.env.MLPKIT_BACKEND ?? 'auto').trim().toLowerCase();
  return raw === 'native' || raw === 'reference' ? raw : 'auto';
}

function unavailable(): Error {
  const reason = nativeLoadError()?.message ?? 'unknown reason';
  const err = new Error(
    `mlpkit: the native backend was requested but did not load (${reason}). ` +
      'Build it with `npm run build` (needs cmake or node-gyp and a C++17 compiler), ' +
      'or use the reference backend.',
  );
  Object.defineProperty(err, 'code', { value: ERR_NATIVE_UNAVAILABLE, enumerable: true });
  return err;
}

function getNative(): Backend | null {
  if (nativeBackend) return nativeBackend;
  const mod = loadNative();
  if (mod) nativeBackend = createNativeBackend(mod);
  return nativeBackend;
}

/** The backend for a model: the model's own choice first, then MLPKIT_BACKEND, then auto. */
export function selectBackend(choice: BackendChoice = 'auto'): Backend {
  const effective = choice === 'auto' ? envChoice() : choice;
  if (effective === 'reference') return referenceBackend;
  const native = getNative();
  if (native) return native;
  if (effective === 'native') throw unavailable();
  if (!warned) {
    warned = true;
    process.emitWarning(
      `native addon not loaded (${nativeLoadError()?.message ?? 'unknown reason'}); ` +
        'using the pure-TypeScript reference backend, which is much slower. Run `npm run build` to build it.',
      { code: 'MLPKIT_REFERENCE_FALLBACK' },
    );
  }
  return referenceBackend;
}

/** True when the native addon loads (whatever MLPKIT_BACKEND says). */
export function nativeAvailable(): boolean {
  return getNative() !== null;
}

export { nativeLoadError };
export { referenceBackend };
