// Which backend runs a quantised model: the usual choice (lib/backend/index.ts), narrowed to
// backends that have quantised kernels. A native addon built before those kernels existed has
// no createQuantModel: 'auto' then falls back to the reference (one warning per process), and
// an explicit 'native' is an error that says so.

import { selectBackend, type BackendChoice } from '../backend/index.js';
import { referenceBackend } from '../backend/reference/index.js';
import type { Backend, BackendQuantModel, QuantModelConfig } from '../backend/types.js';
import { ERR_NATIVE_UNAVAILABLE } from '../errors.js';
import type { QuantLayer } from './format.js';

export interface QuantBackend {
  readonly name: 'native' | 'reference';
  createQuantModel(config: QuantModelConfig, layers: QuantLayer[]): BackendQuantModel;
  /** One call's model made, run and freed inside the backend (see Backend.quantMatmul); optional. */
  quantMatmul?(config: QuantModelConfig, layers: QuantLayer[], x: Float32Array, batch: number, out: Float32Array): void;
}

let warned = false;

function asQuant(backend: Backend): QuantBackend | null {
  const create = backend.createQuantModel;
  const name = backend.name;
  if (!create || name === 'cuda') return null;
  const matmul = backend.quantMatmul;
  return {
    name,
    createQuantModel: (config, layers) => create.call(backend, config, layers),
    ...(matmul && { quantMatmul: (config, layers, x, batch, out) => matmul.call(backend, config, layers, x, batch, out) }),
  };
}

export function selectQuantBackend(choice: BackendChoice = 'auto'): QuantBackend {
  const backend = selectBackend(choice);
  const quant = asQuant(backend);
  if (quant) return quant;
  if (choice === 'native') {
    const err = new Error(
      'mlpkit: the native backend was requested for a quantised model, but this build of the addon has no quantised kernels ' +
        '(rebuild it: `npm rebuild mlpkit`, or `npm run build` in a checkout of mlpkit), or use backend \'reference\' or \'auto\'.',
    );
    Object.defineProperty(err, 'code', { value: ERR_NATIVE_UNAVAILABLE, enumerable: true });
    throw err;
  }
  if (!warned) {
    warned = true;
    process.emitWarning(
      `the ${backend.name} backend has no quantised kernels in this build; quantised models run on the pure-TypeScript reference backend, which is much slower.`,
      { code: 'MLPKIT_QUANT_REFERENCE_FALLBACK' },
    );
  }
  return asQuant(referenceBackend)!;
}
