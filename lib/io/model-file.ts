// Maps a model to safetensors tensors and back. Our own files name layers `layers.<i>.weight`
// and `layers.<i>.bias` and carry the spec in the metadata; PyTorch nn.Sequential state_dicts
// (`0.weight`, `2.weight`, ... with activation modules in between) load too, with the
// activations given by the caller. Weights are [out, in] like nn.Linear either way.

import { ACTIVATIONS, type ActivationName } from '../backend/types.js';
import { FileFormatError, describe, typeError } from '../errors.js';
import { encodedWidth, normalizeEncoding, normalizeSpec, parameterLayout, type EncodingSpec, type NormalizedSpec } from '../spec.js';
import { expectOneOf } from '../validate.js';
import type { SafetensorsFile, TensorInput } from './safetensors.js';

export const SPEC_METADATA_KEY = 'mlpkit.spec';
export const VERSION_METADATA_KEY = 'mlpkit.version';
/** Metadata key of a quantised model's layout (lib/quant/file.ts); such files are not Mlp files. */
export const QUANT_METADATA_KEY = 'mlpkit.quant';
/**
 * Metadata key of a sparse model's per-layer sparsity (lib/sparse/file.ts). Such files are Mlp
 * files plus predictor tensors: Mlp.load reads the dense model out of them.
 */
export const SPARSE_METADATA_KEY = 'mlpkit.sparsity';
/** The tensors a sparse file adds to an Mlp file: `layers.<i>.predictor.{a,a_bias,b,b_bias}`. */
export const PREDICTOR_TENSOR = /^layers\.(\d+)\.predictor\.(a|a_bias|b|b_bias)$/;

/** Options for files that carry no mlpkit spec (e.g. a PyTorch state_dict). */
export interface ForeignModelOptions {
  /** Activation after every layer but the last. */
  activation?: ActivationName;
  /** Activation after the last layer. Default 'none'. */
  outputActivation?: ActivationName;
  /** One activation per linear layer; overrides the two above. */
  activations?: ActivationName[];
  /** Input encoding in front of the first layer. Default identity. */
  encoding?: EncodingSpec;
  /** Negative slope for leaky_relu layers. Default 0.01. */
  alpha?: number;
}

export function modelToTensors(
  spec: NormalizedSpec,
  params: Float32Array,
  version: string,
): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const { slots } = parameterLayout(spec);
  const tensors: Record<string, TensorInput> = {};
  slots.forEach((s, i) => {
    tensors[`layers.${i}.weight`] = {
      shape: [s.rows, s.inputs],
      data: params.subarray(s.weightOffset, s.weightOffset + s.rows * s.inputs),
    };
    if (s.biasOffset >= 0) {
      tensors[`layers.${i}.bias`] = { shape: [s.rows], data: params.subarray(s.biasOffset, s.biasOffset + s.rows) };
    }
  });
  return {
    tensors,
    metadata: { format: 'pt', [SPEC_METADATA_KEY]: JSON.stringify(spec), [VERSION_METADATA_KEY]: version },
  };
}

interface LinearEntry {
  index: number;
  weightKey: string;
  biasKey: string | null;
}

/** Finds the linear layers: keys `<prefix><n>.weight` (+ optional `.bias`), one shared prefix. */
function findLinears(file: SafetensorsFile): LinearEntry[] {
  const names = Object.keys(file.tensors);
  const pattern = /^(.*?)(\d+)\.weight$/;
  const byPrefix = new Map<string, LinearEntry[]>();
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m) continue;
    const list = byPrefix.get(m[1]) ?? [];
    const biasKey = `${m[1]}${m[2]}.bias`;
    list.push({ index: Number(m[2]), weightKey: name, biasKey: biasKey in file.tensors ? biasKey : null });
    byPrefix.set(m[1], list);
  }
  if (byPrefix.size === 0) {
    throw new FileFormatError(`safetensors: no linear layers found (expected tensors named like '0.weight' or 'layers.0.weight'; found ${names.slice(0, 8).join(', ') || 'no tensors'})`);
  }
  if (byPrefix.size > 1) {
    throw new FileFormatError(`safetensors: layer names use several prefixes (${[...byPrefix.keys()].map((p) => `'${p}'`).join(', ')}); expected one MLP`);
  }
  const linears = [...byPrefix.values()][0].sort((a, b) => a.index - b.index);
  const used = new Set(linears.flatMap((l) => (l.biasKey ? [l.weightKey, l.biasKey] : [l.weightKey])));
  const extra = names.filter((n) => !used.has(n));
  if (extra.length) {
    throw new FileFormatError(`safetensors: tensors ${extra.slice(0, 5).map((n) => `'${n}'`).join(', ')} are not weights or biases of a linear layer`);
  }
  return linears;
}

function activationsFor(count: number, opts: ForeignModelOptions): ActivationName[] {
  if (opts.activations !== undefined) {
    if (!Array.isArray(opts.activations)) {
      throw typeError(`Expected an array of activation names for options.activations but received ${describe(opts.activations)}`);
    }
    if (opts.activations.length !== count) {
      throw new FileFormatError(`safetensors: the file has ${count} linear layers but options.activations lists ${opts.activations.length}`);
    }
    return opts.activations.map((a, i) => expectOneOf(`options.activations[${i}]`, a, ACTIVATIONS));
  }
  if (count > 1 && opts.activation === undefined) {
    throw typeError(
      `safetensors: the file has no mlpkit spec in its metadata (a PyTorch state_dict?), so the activations are unknown; ` +
        `pass { activation: 'relu' } (hidden layers) or { activations: [...] } (one per linear layer)`,
    );
  }
  const hidden = opts.activation === undefined ? 'none' : expectOneOf('options.activation', opts.activation, ACTIVATIONS);
  const output = opts.outputActivation === undefined ? 'none' : expectOneOf('options.outputActivation', opts.outputActivation, ACTIVATIONS);
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? output : hidden));
}

/**
 * Rebuilds spec + flat parameters from a file, checking every shape against the spec. A sparse
 * model's file (metadata 'mlpkit.sparsity') gives its dense model: the weights and biases are
 * the float model's, and the predictor tensors are left out.
 */
export function tensorsToModel(file: SafetensorsFile, opts: ForeignModelOptions = {}): { spec: NormalizedSpec; params: Float32Array } {
  if (file.metadata[QUANT_METADATA_KEY] !== undefined) {
    throw new FileFormatError(
      `safetensors: this file holds a quantised model (metadata '${QUANT_METADATA_KEY}'); load it with QuantizedMlp.load or QuantizedMlp.fromSafetensors`,
    );
  }
  if (file.metadata[SPARSE_METADATA_KEY] !== undefined) {
    const tensors = Object.fromEntries(Object.entries(file.tensors).filter(([name]) => !PREDICTOR_TENSOR.test(name)));
    file = { tensors, metadata: file.metadata };
  }
  const linears = findLinears(file);
  let spec: NormalizedSpec;
  const stored = file.metadata[SPEC_METADATA_KEY];
  if (stored !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(stored);
    } catch (err) {
      throw new FileFormatError(`safetensors: metadata '${SPEC_METADATA_KEY}' is not valid JSON (${(err as Error).message})`);
    }
    try {
      spec = normalizeSpec(parsed);
    } catch (err) {
      throw new FileFormatError(`safetensors: metadata '${SPEC_METADATA_KEY}' is not a valid spec: ${(err as Error).message}`);
    }
    if (spec.layers.length !== linears.length) {
      throw new FileFormatError(`safetensors: the spec lists ${spec.layers.length} layers but the file holds ${linears.length} weight tensors`);
    }
  } else {
    const acts = activationsFor(linears.length, opts);
    const encoding = normalizeEncoding(opts.encoding, 'options.encoding');
    const first = file.tensors[linears[0].weightKey];
    if (first.shape.length !== 2) {
      throw new FileFormatError(`safetensors: tensor '${linears[0].weightKey}' has shape [${first.shape.join(', ')}], expected [out, in]`);
    }
    const in0 = first.shape[1];
    const perInput = encoding.type === 'identity' ? 1 : (encoding.includeInput ? 1 : 0) + 2 * encoding.octaves;
    if (in0 % perInput !== 0 || in0 === 0) {
      throw new FileFormatError(`safetensors: tensor '${linears[0].weightKey}' takes ${in0} inputs, which is not a multiple of the ${perInput} features the encoding makes per input`);
    }
    spec = normalizeSpec({
      inputs: in0 / perInput,
      encoding,
      layers: linears.map((l, i) => ({
        units: Math.max(1, file.tensors[l.weightKey].shape[0] ?? 1),
        activation: acts[i],
        bias: l.biasKey !== null,
        ...(opts.alpha !== undefined ? { alpha: opts.alpha } : {}),
      })),
    });
  }
  const { slots, count } = parameterLayout(spec);
  const params = new Float32Array(count);
  let expectedIn = encodedWidth(spec);
  linears.forEach((l, i) => {
    const w = file.tensors[l.weightKey];
    const s = slots[i];
    if (w.data instanceof Int32Array || w.data instanceof Uint8Array) {
      throw new FileFormatError(`safetensors: tensor '${l.weightKey}' has integer dtype ${w.dtype}, expected F32, F16, BF16 or F64`);
    }
    if (w.shape.length !== 2 || w.shape[0] !== s.rows || w.shape[1] !== expectedIn) {
      throw new FileFormatError(`safetensors: tensor '${l.weightKey}' has shape [${w.shape.join(', ')}], expected [${s.rows}, ${expectedIn}] (layer ${i})`);
    }
    params.set(w.data, s.weightOffset);
    const hasBias = l.biasKey !== null;
    if (hasBias !== spec.layers[i].bias) {
      throw new FileFormatError(`safetensors: layer ${i} ${hasBias ? 'has a bias tensor' : `lacks the bias tensor '${l.weightKey.replace(/weight$/, 'bias')}'`} but the spec says bias: ${spec.layers[i].bias}`);
    }
    if (l.biasKey) {
      const b = file.tensors[l.biasKey];
      if (b.data instanceof Int32Array || b.data instanceof Uint8Array) {
        throw new FileFormatError(`safetensors: tensor '${l.biasKey}' has integer dtype ${b.dtype}, expected F32, F16, BF16 or F64`);
      }
      if (b.shape.length !== 1 || b.shape[0] !== s.rows) {
        throw new FileFormatError(`safetensors: tensor '${l.biasKey}' has shape [${b.shape.join(', ')}], expected [${s.rows}]`);
      }
      params.set(b.data, s.biasOffset);
    }
    expectedIn = s.outputs;
  });
  return { spec, params };
}
