// Model files for the CLI and the server: a float model (Mlp), a quantised one (QuantizedMlp) or
// a sparse one (SparseMlp), told apart by the metadata quantised and sparse files carry. The CLI also keeps the column names a
// model was trained on under its own metadata key, so `predict` can pick the same columns.

import type { BackendChoice } from '../backend/index.js';
import { FileFormatError } from '../errors.js';
import { QUANT_METADATA_KEY, SPARSE_METADATA_KEY, SPEC_METADATA_KEY } from '../io/model-file.js';
import { readSafetensors, writeSafetensors, type TensorInput } from '../io/safetensors.js';
import { Mlp } from '../mlp.js';
import { QuantizedMlp } from '../quant/model.js';
import { SparseMlp } from '../sparse/model.js';
import { readWholeFile } from '../io/whole-file.js';
import { CliError } from './errors.js';
import { naming, sniffContent } from './file-errors.js';
import { writeOutput } from './output.js';

export const COLUMNS_METADATA_KEY = 'mlpkit.cli.columns';

export type AnyModel = Mlp | QuantizedMlp | SparseMlp;

/** What the CLI's `train` recorded: input and output column names, and the task. */
export interface ModelColumns {
  inputs: string[];
  outputs: string[];
  task: 'regression' | 'classification';
}

export interface LoadedModel {
  model: AnyModel;
  kind: 'float' | 'quantized' | 'sparse';
  columns: ModelColumns | null;
}

function parseColumns(text: string | undefined): ModelColumns | null {
  if (text === undefined) return null;
  try {
    const c = JSON.parse(text) as ModelColumns;
    return Array.isArray(c.inputs) && Array.isArray(c.outputs) ? c : null;
  } catch {
    return null; // a hand-edited or foreign value: the columns are a convenience, not the model
  }
}

export function modelFromBytes(bytes: Uint8Array, path: string, backend: BackendChoice = 'auto'): LoadedModel {
  let file;
  try {
    file = readSafetensors(bytes);
  } catch (err) {
    // The reader says what is wrong with the bytes, not which file: a data file passed where
    // the model goes reads as a nonsense header length.
    if (!(err instanceof FileFormatError)) throw err;
    const found = sniffContent(bytes);
    if (found === 'an NPY array' || found === 'a text (CSV) file') {
      throw new CliError(`${path} is ${found}, not a model`, 1, 'give a .safetensors model here; data files go after it (mlpkit predict MODEL INPUT) or in --calibration FILE');
    }
    throw new CliError(`${path}: not a readable safetensors model (${err.message})`, 1,
      'MODEL is a .safetensors file from mlpkit train, quantize or sparsify, or net.save()');
  }
  const columns = parseColumns(file.metadata[COLUMNS_METADATA_KEY]);
  if (!(QUANT_METADATA_KEY in file.metadata) && !(SPARSE_METADATA_KEY in file.metadata) && !(SPEC_METADATA_KEY in file.metadata)) {
    throw new CliError(`${path}: no mlpkit spec in the file's metadata (a PyTorch state_dict?)`, 1,
      "load it once with Mlp.load(path, { activation: 'relu' }) and save it with net.save(path) to record the activations");
  }
  try {
    if (QUANT_METADATA_KEY in file.metadata) return { model: QuantizedMlp.fromSafetensors(bytes, { backend }), kind: 'quantized', columns };
    if (SPARSE_METADATA_KEY in file.metadata) return { model: SparseMlp.fromSafetensors(bytes, { backend }), kind: 'sparse', columns };
    return { model: Mlp.fromSafetensors(bytes, { backend }), kind: 'float', columns };
  } catch (err) {
    // The loaders say what is wrong inside the file; with several files on a command line the
    // reader also needs to know which one.
    if (!(err instanceof FileFormatError)) throw err;
    throw new CliError(`${path}: ${err.message}`, 1, 'the file is damaged or was not written by mlpkit; write it again with mlpkit train, quantize or sparsify');
  }
}

export async function loadModelFile(path: string, backend: BackendChoice = 'auto'): Promise<LoadedModel> {
  return modelFromBytes(await naming(path, readWholeFile(path)), path, backend);
}

/** Saves a model with the CLI's column metadata beside mlpkit's own. */
export async function saveModelFile(path: string, model: AnyModel, columns: ModelColumns | null): Promise<void> {
  let bytes = model.toSafetensors();
  if (columns) {
    // mlpkit's writers take no extra metadata: read the bytes back and write them with it. Our
    // own files hold only dtypes the writer takes (F32, I8, U8), so the copy is exact.
    const file = readSafetensors(bytes);
    const tensors: Record<string, TensorInput> = {};
    for (const [name, t] of Object.entries(file.tensors)) {
      tensors[name] = { shape: t.shape, data: t.data, dtype: t.dtype as TensorInput['dtype'] };
    }
    bytes = writeSafetensors(tensors, { ...file.metadata, [COLUMNS_METADATA_KEY]: JSON.stringify(columns) });
  }
  await writeOutput(path, bytes);
}
