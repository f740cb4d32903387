// Maps a model to safetensors tensors and back. Our own files name layers `layers.<i>.weight`
// and `layers.<i>.bias` and carry the spec in the metadata; PyTorch nn.Sequential state_dicts
// (`0.weight`, `2.weight`, ... with activation modules in between) load too, with the
// activations given by the caller. Weights are [out, in] like nn.Linear either way.

import { ACTIVATIONS, type ActivationName } from '../backend/types.js';
import { FileFormatError, describe, rangeError, typeError } from '../errors.js';
import { encodedWidth, normalizeEncoding, normalizeSpec, parameterLayout, type EncodingSpec, type NormalizedSpec } from '../spec.js';
import { allocFloat32, expectNumber, expectOneOf, firstNonFinite, isArray, rejectUnknownKeys } from '../validate.js';
import { clip, parseFileJson, preview, type SafetensorsFile, type TensorInput } from './safetensors.js';
import { offerHugePages } from '../huge-pages.js';

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
/** A sparse file's int8 layers add `layers.<i>.weight_scale` (one scale per weight row). */
export const WEIGHT_SCALE_TENSOR = /^layers\.(\d+)\.weight_scale$/;

/** Options for files that carry no mlpkit spec (e.g. a PyTorch state_dict). */
export interface ForeignModelOptions {
  /** Activation after every layer but the last. */
  activation?: ActivationName;
  /** Activation after the last layer. Default 'none'. */
  outputActivation?: ActivationName;
  /** One activation per linear layer; overrides the two above. */
  activations?: readonly ActivationName[];
  /** Input encoding in front of the first layer. Default identity. */
  encoding?: EncodingSpec;
  /** Negative slope for leaky_relu layers. Default 0.01. */
  alpha?: number;
}

/** The names ForeignModelOptions takes. */
export const FOREIGN_MODEL_OPTION_KEYS = ['activation', 'outputActivation', 'activations', 'encoding', 'alpha'] as const;

/**
 * Rejects names a load options object does not take: ForeignModelOptions' and `also` (the
 * loader's own, such as backend). Checked before the file is read, whatever the file holds.
 */
export function rejectUnknownLoadOptions(options: Record<string, unknown>, also: readonly string[], name = 'options'): void {
  rejectUnknownKeys(name, options, [...FOREIGN_MODEL_OPTION_KEYS, ...also]);
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

/**
 * `<prefix><n>.weight` -> [prefix, n digits], or null. A linear scan: the obvious regex
 * /^(.*?)(\d+)\.weight$/ backtracks quadratically on a long name of digits.
 */
function splitWeightName(name: string): [string, string] | null {
  const suffix = '.weight';
  if (!name.endsWith(suffix)) return null;
  const stem = name.slice(0, -suffix.length);
  let start = stem.length;
  while (start > 0 && stem.charCodeAt(start - 1) >= 0x30 && stem.charCodeAt(start - 1) <= 0x39) start--;
  return start === stem.length ? null : [stem.slice(0, start), stem.slice(start)];
}

const quoteAll = (names: string[]) => names.slice(0, 5).map((n) => `'${clip(n)}'`).join(', ');

/** Finds the linear layers: keys `<prefix><n>.weight` (+ optional `.bias`), one shared prefix. */
function findLinears(file: SafetensorsFile): LinearEntry[] {
  const names = Object.keys(file.tensors);
  const has = (name: string) => Object.prototype.hasOwnProperty.call(file.tensors, name);
  const byPrefix = new Map<string, LinearEntry[]>();
  for (const name of names) {
    const m = splitWeightName(name);
    if (!m) continue;
    const list = byPrefix.get(m[0]) ?? [];
    const biasKey = `${m[0]}${m[1]}.bias`;
    list.push({ index: Number(m[1]), weightKey: name, biasKey: has(biasKey) ? biasKey : null });
    byPrefix.set(m[0], list);
  }
  if (byPrefix.size === 0) {
    throw new FileFormatError(`safetensors: no linear layers found (expected tensors named like '0.weight' or 'layers.0.weight'; found ${quoteAll(names) || 'no tensors'})`);
  }
  if (byPrefix.size > 1) {
    throw new FileFormatError(`safetensors: layer names use several prefixes (${quoteAll([...byPrefix.keys()])}); expected one MLP`);
  }
  const linears = [...byPrefix.values()][0].sort((a, b) => a.index - b.index);
  for (let i = 1; i < linears.length; i++) {
    if (linears[i].index === linears[i - 1].index) {
      // '1.weight' and '01.weight': one layer index twice, and no order between them.
      throw new FileFormatError(`safetensors: tensors ${quoteAll([linears[i - 1].weightKey, linears[i].weightKey])} name the same layer index`);
    }
  }
  const used = new Set(linears.flatMap((l) => (l.biasKey ? [l.weightKey, l.biasKey] : [l.weightKey])));
  const extra = names.filter((n) => !used.has(n));
  if (extra.length) {
    throw new FileFormatError(`safetensors: tensors ${quoteAll(extra)} are not weights or biases of a linear layer`);
  }
  return linears;
}

function activationsFor(count: number, opts: ForeignModelOptions): ActivationName[] {
  if (opts.activations !== undefined) {
    const list = opts.activations as unknown;
    if (!isArray(list)) {
      throw typeError(`Expected an array of activation names for options.activations but received ${describe(list)}`);
    }
    const length = list.length;
    if (length !== count) {
      // The caller's list does not fit the file: an argument error, not a corrupt file.
      throw rangeError(`Expected options.activations to list one activation per linear layer: the file has ${count} linear layers but options.activations lists ${length}`);
    }
    return Array.from({ length }, (_, i) => expectOneOf(`options.activations[${i}]`, list[i], ACTIVATIONS));
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
let warnedIgnoredOptions = false;

export function tensorsToModel(file: SafetensorsFile, opts: ForeignModelOptions = {}): { spec: NormalizedSpec; params: Float32Array } {
  if (file.metadata[QUANT_METADATA_KEY] !== undefined) {
    throw new FileFormatError(
      `safetensors: this file holds a quantised model (metadata '${QUANT_METADATA_KEY}'); load it with QuantizedMlp.load or QuantizedMlp.fromSafetensors`,
    );
  }
  if (file.metadata[SPARSE_METADATA_KEY] !== undefined) {
    const tensors = Object.fromEntries(Object.entries(file.tensors).filter(([name]) => !PREDICTOR_TENSOR.test(name) && !WEIGHT_SCALE_TENSOR.test(name)));
    file = { tensors, metadata: file.metadata };
  }
  const linears = findLinears(file);
  let spec: NormalizedSpec;
  const stored = file.metadata[SPEC_METADATA_KEY];
  if (stored !== undefined) {
    // The file says what its layers are, so options that would say it instead do not apply.
    // Not an error: a caller may load any file with one fallback for state_dicts (the file fuzz
    // tests do), but said once, so that nobody believes an activation took effect.
    const given = FOREIGN_MODEL_OPTION_KEYS.find((k) => opts[k] !== undefined);
    if (given !== undefined && !warnedIgnoredOptions) {
      warnedIgnoredOptions = true;
      process.emitWarning(`options.${given} applies to files without an mlpkit spec (a PyTorch state_dict) and is ignored here: ` +
        'this file records its own activations and encoding', { code: 'MLPKIT_LOAD_OPTION_IGNORED' });
    }
    const parsed = parseFileJson(stored, `metadata '${SPEC_METADATA_KEY}'`);
    try {
      // Fields this version does not know are the file's business (a later version may add
      // some), not a caller's typo: they are ignored, as they always were.
      spec = normalizeSpec(parsed, { allowUnknownKeys: true });
    } catch (err) {
      throw new FileFormatError(`safetensors: metadata '${SPEC_METADATA_KEY}' is not a valid spec: ${(err as Error).message}`);
    }
    if (spec.layers.length !== linears.length) {
      throw new FileFormatError(`safetensors: the spec lists ${spec.layers.length} layers but the file holds ${linears.length} weight tensors`);
    }
  } else {
    // The caller's options first: their errors are the caller's, not the file's.
    const acts = activationsFor(linears.length, opts);
    const encoding = normalizeEncoding(opts.encoding, 'options.encoding');
    if (opts.alpha !== undefined) expectNumber('options.alpha', opts.alpha);
    const firstKey = linears[0].weightKey;
    const first = file.tensors[firstKey];
    if (first.shape.length !== 2) {
      throw new FileFormatError(`safetensors: tensor '${clip(firstKey)}' has shape ${preview(first.shape)}, expected [out, in]`);
    }
    const in0 = first.shape[1];
    const perInput = encoding.type === 'identity' ? 1 : (encoding.includeInput ? 1 : 0) + 2 * encoding.octaves;
    if (in0 === 0) {
      throw new FileFormatError(`safetensors: tensor '${clip(firstKey)}' takes 0 inputs, expected at least 1`);
    }
    if (in0 % perInput !== 0) {
      // Only an encoding that makes several features per input gets here: the caller's
      // options.encoding does not fit the file.
      throw rangeError(`Expected options.encoding to fit the file: tensor '${clip(firstKey)}' takes ${in0} inputs, which is not a multiple of the ${perInput} features options.encoding makes per input`);
    }
    try {
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
    } catch (err) {
      throw new FileFormatError(`safetensors: the file's layers do not make a model mlpkit can hold: ${(err as Error).message}`);
    }
  }
  const { slots, count } = parameterLayout(spec);
  // Every tensor is checked against the spec before the parameters are allocated: a small
  // hostile file cannot make the loader allocate what the spec claims.
  let expectedIn = encodedWidth(spec);
  linears.forEach((l, i) => {
    const w = file.tensors[l.weightKey];
    const s = slots[i];
    if (w.data instanceof Int32Array || w.data instanceof Uint8Array) {
      throw new FileFormatError(`safetensors: tensor '${clip(l.weightKey)}' has integer dtype ${w.dtype}, expected F32, F16, BF16 or F64`);
    }
    if (w.shape.length !== 2 || w.shape[0] !== s.rows || w.shape[1] !== expectedIn) {
      throw new FileFormatError(`safetensors: tensor '${clip(l.weightKey)}' has shape ${preview(w.shape).replace(/,/g, ', ')}, expected [${s.rows}, ${expectedIn}] (layer ${i})`);
    }
    const hasBias = l.biasKey !== null;
    if (hasBias !== spec.layers[i].bias) {
      throw new FileFormatError(`safetensors: layer ${i} ${hasBias ? 'has a bias tensor' : `lacks the bias tensor '${clip(l.weightKey.slice(0, -'weight'.length))}bias'`} but the spec says bias: ${spec.layers[i].bias}`);
    }
    if (l.biasKey) {
      const b = file.tensors[l.biasKey];
      if (b.data instanceof Int32Array || b.data instanceof Uint8Array) {
        throw new FileFormatError(`safetensors: tensor '${clip(l.biasKey)}' has integer dtype ${b.dtype}, expected F32, F16, BF16 or F64`);
      }
      if (b.shape.length !== 1 || b.shape[0] !== s.rows) {
        throw new FileFormatError(`safetensors: tensor '${clip(l.biasKey)}' has shape ${preview(b.shape).replace(/,/g, ', ')}, expected [${s.rows}]`);
      }
    }
    expectedIn = s.outputs;
  });
  const params = offerHugePages(allocFloat32('the parameters', count));
  linears.forEach((l, i) => {
    params.set(file.tensors[l.weightKey].data, slots[i].weightOffset);
    if (l.biasKey) params.set(file.tensors[l.biasKey].data, slots[i].biasOffset);
  });
  // As setParameters: a NaN or an infinity (an F16 export past 65504) would only come out as
  // NaN predictions, or as a quantisation error about scales the caller never gave.
  // (Scanned as float32, so an F64 value past float32's range counts too.)
  const bad = firstNonFinite(params);
  if (bad >= 0) {
    linears.forEach((l, i) => {
      for (const [key, offset] of [[l.weightKey, slots[i].weightOffset], [l.biasKey, slots[i].biasOffset]] as const) {
        if (key === null) continue;
        const t = file.tensors[key];
        const at = bad - offset;
        if (at < 0 || at >= t.data.length) continue;
        const where = t.shape.length === 2 ? `[${Math.floor(at / t.shape[1])}, ${at % t.shape[1]}]` : `[${at}]`;
        throw new FileFormatError(`safetensors: tensor '${clip(key)}' holds ${t.data[at]} at ${where}; parameters must be finite float32 values`);
      }
    });
  }
  return { spec, params };
}
