// qmatmul: one quantised layer, for callers who want the matmul without a model. The layer's
// own bias and activation are applied (a layer with bias null and activation 0, 'none', is the
// bare product). Each call checks the layer and, on the native backend, repacks it into a
// one-layer model that lives only inside the addon call (quantMatmul); a caller that runs the
// same layer many times makes that model once with QuantizedMlp.fromLayers([layer])
// (bench/qmatmul.mjs: 4.9-33x faster per call at batch 1).

import type { BackendChoice } from '../backend/index.js';
import { BACKEND_CHOICES } from '../backend/index.js';
import type { QuantModelConfig } from '../backend/types.js';
import { rangeError } from '../errors.js';
import { allocFloat32, expectBatch, expectInteger, expectObject, expectOneOf, expectOutputBuffer, rejectUnknownKeys } from '../validate.js';
import { selectQuantBackend } from './backend.js';
import { checkQuantLayer } from './check.js';
import { QUANT_ACTIVATIONS, type QuantActivations, type QuantLayer } from './format.js';
import { checkW8A8Width, referenceQmatmul } from './reference.js';

export interface QmatmulOptions {
  /** 'float' (default): x as it is, weights dequantised; 'int8': x quantised per row (W8A8). */
  activations?: QuantActivations;
  /** Output buffer, batch x outputs. */
  out?: Float32Array;
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
}

/**
 * y[batch x outputs] = activation(x . dequant(W)^T + bias) for x[batch x inputs] row-major.
 * The batch is x.length / layer.inputs; when given, it must match.
 */
export function qmatmul(x: Float32Array, layer: QuantLayer, options?: QmatmulOptions): Float32Array;
export function qmatmul(x: Float32Array, batch: number, layer: QuantLayer, options?: QmatmulOptions): Float32Array;
export function qmatmul(
  x: Float32Array,
  second: number | QuantLayer,
  third?: QuantLayer | QmatmulOptions,
  fourth?: QmatmulOptions,
): Float32Array {
  const givenBatch = typeof second === 'number' ? expectInteger('batch', second, 1) : null;
  const layer = checkQuantLayer(typeof second === 'number' ? third : second, 'layer');
  const options = expectObject('options', (typeof second === 'number' ? fourth : third) ?? {});
  rejectUnknownKeys('options', options, ['activations', 'out', 'backend']);
  const batch = expectBatch('x', x, layer.inputs);
  if (givenBatch !== null && givenBatch !== batch) {
    throw rangeError(`Expected x to hold batch x inputs = ${givenBatch} x ${layer.inputs} = ${givenBatch * layer.inputs} floats but received ${x.length}`);
  }
  const activations = options.activations === undefined ? 'float' : expectOneOf('options.activations', options.activations, QUANT_ACTIVATIONS);
  if (activations === 'int8') checkW8A8Width(layer, 'qmatmul');
  const out = options.out === undefined ? allocFloat32('the output', batch * layer.outputs) : expectOutputBuffer('options.out', options.out, batch * layer.outputs);
  const choice = options.backend === undefined ? 'auto' : expectOneOf('options.backend', options.backend, BACKEND_CHOICES);
  const backend = selectQuantBackend(choice);
  if (backend.name === 'reference') return referenceQmatmul(x, batch, layer, activations, out);
  const config: QuantModelConfig = { inputs: layer.inputs, encoding: 0, octaves: 0, includeInput: false, activations: QUANT_ACTIVATIONS.indexOf(activations) };
  if (backend.quantMatmul) {
    // Made, run and freed inside one native call: no model object per call for the GC to finalize.
    backend.quantMatmul(config, [layer], x, batch, out);
    return out;
  }
  const model = backend.createQuantModel(config, [layer]);
  try {
    model.predict(x, batch, out);
  } finally {
    model.dispose();
  }
  return out;
}
