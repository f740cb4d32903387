// The model spec: plain JSON a user writes, stores and diffs (kept in safetensors metadata),
// checked once and turned into the numeric ModelConfig both backends run.

import { ACTIVATIONS, ENCODINGS, type ActivationName, type ModelConfig } from './backend/types.js';
import { describe, rangeError, typeError } from './errors.js';
import { expectBoolean, expectInteger, expectNumber, expectObject, expectOneOf, isArray, rejectUnknownKeys } from './validate.js';

export type { ActivationName } from './backend/types.js';

export interface LayerSpec {
  /** Output width of the layer. */
  units: number;
  /** Activation applied after the affine map. Default 'none'. */
  activation?: ActivationName;
  /** Whether the layer has a bias. Default true. */
  bias?: boolean;
  /** Negative slope of leaky_relu. Default 0.01 (PyTorch's). */
  alpha?: number;
  /**
   * A gated layer (GLU family): two affine maps of the same input, the output
   * activation(gate) * up. The weight is [2 * units, inputs], the gate's rows first, then the
   * up projection's (the fused gate_up_proj layout); the bias [2 * units] likewise. SwiGLU is
   * activation 'silu', GeGLU 'gelu', ReGLU 'relu'. Default false.
   */
  gated?: boolean;
  /**
   * Add the input of the previous layer to this layer's output (after its activation): the
   * residual connection around a two-layer block, x + down(act(up(x))) or, with a gated first
   * layer, the transformer FFN x + down(act(gate(x)) * up(x)). The widths must match. Default false.
   */
  residual?: boolean;
}

export type EncodingSpec =
  | 'identity'
  | { type: 'identity' }
  | {
      type: 'frequency';
      /** Number of octaves k = 0..octaves-1, features sin/cos(2^k * pi * x). */
      octaves: number;
      /** Keep the raw input in front of the Fourier features. Default true. */
      includeInput?: boolean;
    };

export const INITS = ['torch', 'xavier-uniform', 'xavier-normal', 'he-uniform', 'he-normal'] as const;
export type InitName = (typeof INITS)[number];

export interface MlpSpec {
  inputs: number;
  layers: readonly LayerSpec[];
  encoding?: EncodingSpec;
  /** Weight initialiser. Default 'torch' (nn.Linear's default). */
  init?: InitName;
  /** Seed for the initialiser. Default 0. */
  seed?: number;
}

/** A spec with every default filled in: what is saved and what `net.spec` returns. */
export interface NormalizedSpec {
  inputs: number;
  encoding: { type: 'identity' } | { type: 'frequency'; octaves: number; includeInput: boolean };
  layers: Required<LayerSpec>[];
  init: InitName;
  seed: number;
}

export const MAX_WIDTH = 1 << 20;
const MAX_LAYERS = 1024;
/**
 * Most parameters a model may have: 2^31 - 1 floats (8 GiB), int32-indexable. Checked with the
 * spec, so a spec that asks for more is a RangeError, not an allocation that fails (or, worse,
 * succeeds lazily and exhausts memory later).
 */
export const MAX_PARAMETERS = 2 ** 31 - 1;

/** The names each part of a spec takes (anything else is a RangeError, see normalizeSpec). */
export const SPEC_KEYS = ['inputs', 'layers', 'encoding', 'init', 'seed'] as const;
export const LAYER_KEYS = ['units', 'activation', 'bias', 'alpha', 'gated', 'residual'] as const;
export const ENCODING_KEYS = { identity: ['type'], frequency: ['type', 'octaves', 'includeInput'] } as const;

export interface NormalizeSpecOptions {
  /**
   * Ignore names the spec does not define instead of rejecting them. Only for specs read from a
   * file's metadata, whose extra fields are a question of the file format (what a later version
   * may add), not a caller's typo.
   */
  allowUnknownKeys?: boolean;
}

export function normalizeEncoding(value: unknown, name = 'spec.encoding', options: NormalizeSpecOptions = {}): NormalizedSpec['encoding'] {
  if (value === undefined || value === 'identity') return { type: 'identity' };
  const enc = expectObject(name, value);
  const type = expectOneOf(`${name}.type`, enc.type, ENCODINGS);
  if (!options.allowUnknownKeys) rejectUnknownKeys(name, enc, ENCODING_KEYS[type], `encoding type '${type}'`);
  if (type === 'identity') return { type: 'identity' };
  const octaves = expectInteger(`${name}.octaves`, enc.octaves, 1, 24);
  const includeInput = enc.includeInput === undefined ? true : expectBoolean(`${name}.includeInput`, enc.includeInput);
  return { type: 'frequency', octaves, includeInput };
}

/**
 * The spec checked, with every default filled in. Names it does not define (at the top level,
 * in a layer or in the encoding) are a RangeError naming them, unless options.allowUnknownKeys.
 */
export function normalizeSpec(value: unknown, options: NormalizeSpecOptions = {}): NormalizedSpec {
  const strict = !options.allowUnknownKeys;
  const spec = expectObject('spec', value);
  if (strict) rejectUnknownKeys('spec', spec, SPEC_KEYS);
  const inputs = expectInteger('spec.inputs', spec.inputs, 1, MAX_WIDTH);
  const rawLayers = spec.layers;
  if (!isArray(rawLayers)) {
    throw typeError(`Expected an array of layers for spec.layers but received ${describe(rawLayers)}`);
  }
  const layerCount = rawLayers.length;
  if (layerCount === 0 || layerCount > MAX_LAYERS) {
    throw expectInteger('spec.layers.length', layerCount, 1, MAX_LAYERS) as never;
  }
  const layers = Array.from({ length: layerCount }, (_, i) => {
    const raw = rawLayers[i];
    const name = `spec.layers[${i}]`;
    const layer = expectObject(name, raw);
    if (strict) rejectUnknownKeys(name, layer, LAYER_KEYS);
    const units = expectInteger(`${name}.units`, layer.units, 1, MAX_WIDTH);
    const activation =
      layer.activation === undefined ? 'none' : expectOneOf(`${name}.activation`, layer.activation, ACTIVATIONS);
    const bias = layer.bias === undefined ? true : expectBoolean(`${name}.bias`, layer.bias);
    const alpha = layer.alpha === undefined ? 0.01 : expectNumber(`${name}.alpha`, layer.alpha);
    const gated = layer.gated === undefined ? false : expectBoolean(`${name}.gated`, layer.gated);
    const residual = layer.residual === undefined ? false : expectBoolean(`${name}.residual`, layer.residual);
    return { units, activation, bias, alpha, gated, residual };
  });
  const encoding = normalizeEncoding(spec.encoding, 'spec.encoding', options);
  layers.forEach((layer, i) => {
    if (!layer.residual) return;
    if (i === 0) throw rangeError('spec.layers[0].residual: a residual layer adds the input of the layer before it, and layer 0 has none');
    const blockInputs = i === 1 ? encodedWidthOf(inputs, encoding) : layers[i - 2].units;
    if (layer.units !== blockInputs) {
      throw rangeError(`spec.layers[${i}].residual: the layer adds the input of layer ${i - 1}, so its units must equal that width (${blockInputs}) but are ${layer.units}`);
    }
  });
  const init = spec.init === undefined ? 'torch' : expectOneOf('spec.init', spec.init, INITS);
  const seed = spec.seed === undefined ? 0 : expectInteger('spec.seed', spec.seed, 0, 2 ** 32 - 1);
  const normalized: NormalizedSpec = { inputs, encoding, layers, init, seed };
  const { count } = parameterLayout(normalized);
  if (count > MAX_PARAMETERS) {
    throw rangeError(`Expected at most ${MAX_PARAMETERS} parameters (2^31 - 1) for spec but its layers need ${count}`);
  }
  return normalized;
}

function encodedWidthOf(inputs: number, enc: NormalizedSpec['encoding']): number {
  if (enc.type === 'identity') return inputs;
  return (enc.includeInput ? inputs : 0) + 2 * enc.octaves * inputs;
}

export function encodedWidth(spec: NormalizedSpec): number {
  return encodedWidthOf(spec.inputs, spec.encoding);
}

/** Where each layer's weight and bias sit in the flat parameter vector. */
export interface LayerSlot {
  inputs: number;
  outputs: number;
  /** Rows of the weight and length of the bias: 2 * outputs for a gated layer. */
  rows: number;
  weightOffset: number;
  biasOffset: number; // -1 when the layer has no bias
}

export function parameterLayout(spec: NormalizedSpec): { slots: LayerSlot[]; count: number } {
  const slots: LayerSlot[] = [];
  let inputs = encodedWidth(spec);
  let offset = 0;
  for (const layer of spec.layers) {
    const rows = layer.gated ? 2 * layer.units : layer.units;
    const weightOffset = offset;
    offset += rows * inputs;
    const biasOffset = layer.bias ? offset : -1;
    if (layer.bias) offset += rows;
    slots.push({ inputs, outputs: layer.units, rows, weightOffset, biasOffset });
    inputs = layer.units;
  }
  return { slots, count: offset };
}

/** The input and encoding fields every backend model's config starts with (dense, quantised, sparse). */
export function encodingConfig(spec: Pick<NormalizedSpec, 'inputs' | 'encoding'>): Pick<ModelConfig, 'inputs' | 'encoding' | 'octaves' | 'includeInput'> {
  const enc = spec.encoding;
  return {
    inputs: spec.inputs,
    encoding: ENCODINGS.indexOf(enc.type),
    octaves: enc.type === 'frequency' ? enc.octaves : 0,
    includeInput: enc.type === 'frequency' ? enc.includeInput : false,
  };
}

export function toModelConfig(spec: NormalizedSpec): ModelConfig {
  const L = spec.layers.length;
  return {
    ...encodingConfig(spec),
    units: Int32Array.from(spec.layers, (l) => l.units),
    activations: Int32Array.from(spec.layers, (l) => ACTIVATIONS.indexOf(l.activation)),
    alphas: Float32Array.from(spec.layers, (l) => (l.activation === 'leaky_relu' ? l.alpha : 0)),
    bias: Uint8Array.from({ length: L }, (_, i) => (spec.layers[i].bias ? 1 : 0)),
    gated: Uint8Array.from(spec.layers, (l) => (l.gated ? 1 : 0)),
    residual: Uint8Array.from(spec.layers, (l) => (l.residual ? 1 : 0)),
  };
}
