// An mlpkit MLP as an ONNX model, built in memory for onnxruntime: per layer one Gemm
// (transB=1, so the weight stays [out, in] as mlpkit and torch.nn.Linear keep it) and, where the
// layer has one, its activation node (silu as Sigmoid and Mul). A gated layer is two Gemms, its
// gate rows and its up rows, and a Mul of act(gate) by up; a residual layer ends with an Add of
// the previous layer's input. Input "x" [batch, inputs], output "y" [batch, outputs],
// with a symbolic batch dimension so one session serves every batch size. Used by the benches
// and by `mlpkit bench`; not part of the public API.
//
// Field numbers are those of onnx/onnx.proto (IR version 8, default-domain opset 17).

import type { LayerParameters } from '../mlp.js';
import type { NormalizedSpec } from '../spec.js';
import { bytesField, encode, intField, message, stringField, type Encoded } from './protobuf.js';

const IR_VERSION = 8;
const OPSET = 17;
const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTRIBUTE_INT = 2; // AttributeProto.AttributeType.INT
// A protobuf message is at most 2 GiB, and this exporter writes every weight inline (no external
// data files); 1 MiB is left for the graph around them.
const MAX_WEIGHT_BYTES = 2 ** 31 - 2 ** 20;
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

// mlpkit activations that are one parameter-free ONNX op, and silu (x * sigmoid(x), two ops).
// Anything else (leaky_relu's alpha, gelu, ...) is refused, not guessed.
// One difference on purpose: for a NaN input mlpkit's relu gives 0 (z > 0 ? z : 0, README "NaN
// and Infinity") while ONNX Relu keeps the NaN, as PyTorch does; finite inputs agree.
const ACTIVATION_OPS: Record<string, string> = { relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh' };
const EXPORTED_ACTIVATIONS = new Set(['none', 'silu', ...Object.keys(ACTIVATION_OPS)]);

/** TensorProto: a float32 initializer, little-endian raw_data whatever the host's byte order. */
// On a little-endian host the values' own bytes are the piece (encode copies them once).
function floatTensor(name: string, dims: number[], values: Float32Array): Encoded {
  let raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (!LITTLE_ENDIAN) {
    raw = new Uint8Array(values.length * 4);
    const view = new DataView(raw.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  }
  return message(
    dims.map((d) => intField(1, d)), // dims (repeated int64, unpacked is valid for readers)
    intField(2, FLOAT), // data_type
    stringField(8, name), // name
    bytesField(9, raw), // raw_data
  );
}

/** ValueInfoProto of a float tensor [batch, width]; the first dimension is the symbol "batch". */
function batchedFloatValue(name: string, width: number): Encoded {
  const dims = message(
    bytesField(1, stringField(2, 'batch')), // Dimension.dim_param
    bytesField(1, intField(1, width)), // Dimension.dim_value
  );
  const tensorType = message(intField(1, FLOAT), bytesField(2, dims)); // elem_type, shape
  return message(stringField(1, name), bytesField(2, bytesField(1, tensorType))); // name, type.tensor_type
}

function intAttribute(name: string, value: number): Encoded {
  return message(stringField(1, name), intField(3, value), intField(20, ATTRIBUTE_INT)); // name, i, type
}

function node(opType: string, name: string, inputs: string[], outputs: string[], attributes: Encoded[] = []): Encoded {
  return message(
    inputs.map((s) => stringField(1, s)),
    outputs.map((s) => stringField(2, s)),
    stringField(3, name),
    stringField(4, opType),
    attributes.map((a) => bytesField(5, a)),
  );
}

/** Why a model cannot be exported, or null when it can. */
export function onnxExportProblem(spec: Pick<NormalizedSpec, 'encoding' | 'layers'>): string | null {
  if (!spec || !Array.isArray(spec.layers)) return 'only float models (Mlp, with a spec) are exported';
  if (spec.encoding && spec.encoding.type !== 'identity') return `input encoding '${spec.encoding.type}' is not exported`;
  const bad = spec.layers.findIndex((l) => !EXPORTED_ACTIVATIONS.has(l.activation));
  return bad < 0 ? null : `activation '${spec.layers[bad].activation}' of layer ${bad} has no exporter`;
}

/** The layers must be the spec's, chained, with weights of their shapes, and fit one protobuf. */
function checkLayers(
  spec: Pick<NormalizedSpec, 'layers'> & { inputs?: number },
  layers: Pick<LayerParameters, 'inputs' | 'outputs' | 'weight' | 'bias'>[],
): void {
  const fail = (why: string) => {
    throw new Error(`mlpToOnnx: ${why}`);
  };
  if (!Array.isArray(layers) || layers.length !== spec.layers.length || layers.length === 0) {
    fail(`the spec has ${spec.layers.length} layers but ${Array.isArray(layers) ? layers.length : 'no list of'} layers were given`);
  }
  let width = spec.inputs ?? layers[0].inputs;
  let bytes = 0;
  layers.forEach((layer, i) => {
    const s = spec.layers[i] as { units?: number; gated?: boolean; residual?: boolean };
    if (!(layer?.weight instanceof Float32Array)) fail(`layers[${i}] has no Float32Array weight (only float models are exported)`);
    if (s.units !== undefined && layer.outputs !== s.units) fail(`layers[${i}] has ${layer.outputs} outputs but the spec says ${s.units}`);
    if (layer.inputs !== width) fail(`layers[${i}] takes ${layer.inputs} inputs but ${i ? `layer ${i - 1} gives` : 'the spec has'} ${width}`);
    const rows = (s.gated ? 2 : 1) * layer.outputs;
    if (layer.weight.length !== rows * layer.inputs) fail(`layers[${i}].weight holds ${layer.weight.length} values, not ${rows} x ${layer.inputs}`);
    if (layer.bias && layer.bias.length !== rows) fail(`layers[${i}].bias holds ${layer.bias.length} values, not ${rows}`);
    bytes += 4 * (layer.weight.length + (layer.bias?.length ?? 0));
    width = layer.outputs;
  });
  if (bytes > MAX_WEIGHT_BYTES) {
    fail(`${(bytes / 2 ** 30).toFixed(2)} GiB of weights do not fit the 2 GiB limit of one ONNX (protobuf) file; ` +
      'external data files are not written');
  }
}

/**
 * mlpToOnnx(spec, layers) -> a serialized ModelProto
 *   spec: net.spec (normalized: layers[i].activation, encoding)
 *   layers: net.getLayers()
 */
export function mlpToOnnx(
  spec: Pick<NormalizedSpec, 'encoding' | 'layers'> & { inputs?: number },
  layers: Pick<LayerParameters, 'inputs' | 'outputs' | 'weight' | 'bias'>[],
): Uint8Array {
  const problem = onnxExportProblem(spec);
  if (problem) throw new Error(`mlpToOnnx: ${problem}`);
  checkLayers(spec, layers);
  const nodes: Encoded[] = [];
  const initializers: Encoded[] = [];
  // Y = X W^T + b for rows [first, first + rows) of the layer's weight: transB reads W as torch
  // stores it, no transposed copy.
  const gemm = (i: number, layer: (typeof layers)[number], input: string, part: string, first: number, rows: number, out: string): void => {
    const name = `layers.${i}${part}`;
    const inputs = [input, `${name}.weight`];
    initializers.push(floatTensor(`${name}.weight`, [rows, layer.inputs], layer.weight.subarray(first * layer.inputs, (first + rows) * layer.inputs)));
    if (layer.bias) {
      inputs.push(`${name}.bias`);
      initializers.push(floatTensor(`${name}.bias`, [rows], layer.bias.subarray(first, first + rows)));
    }
    nodes.push(node('Gemm', `${name}.gemm`, inputs, [out], [intAttribute('transB', 1)]));
  };
  const activate = (i: number, activation: string, input: string, out: string): void => {
    if (activation === 'silu') {
      nodes.push(node('Sigmoid', `layers.${i}.sigmoid`, [input], [`layers.${i}.sigmoid`]));
      nodes.push(node('Mul', `layers.${i}.silu`, [input, `layers.${i}.sigmoid`], [out]));
    } else {
      nodes.push(node(ACTIVATION_OPS[activation], `layers.${i}.${activation}`, [input], [out]));
    }
  };
  let current = 'x';
  let previous = 'x'; // the input of the layer before: what a residual layer adds
  layers.forEach((layer, i) => {
    const { activation, gated, residual } = spec.layers[i];
    const last = i === layers.length - 1;
    const out = last ? 'y' : `layers.${i}.out`;
    // Each stage writes `out` when it is the layer's last, else a name of its own.
    const stages = (gated || activation === 'none' ? 1 : 2) + (residual ? 1 : 0);
    let stage = 0;
    const next = (name: string): string => (++stage === stages ? out : name);
    const n = layer.outputs;
    let value: string;
    if (gated) {
      const gate = `layers.${i}.gate.linear`;
      gemm(i, layer, current, '.gate', 0, n, gate);
      const act = activation === 'none' ? gate : `layers.${i}.gate.${activation}`;
      if (activation !== 'none') activate(i, activation, gate, act);
      gemm(i, layer, current, '.up', n, n, `layers.${i}.up.linear`);
      value = next(`layers.${i}.product`);
      nodes.push(node('Mul', `layers.${i}.product`, [act, `layers.${i}.up.linear`], [value]));
    } else {
      value = next(`layers.${i}.linear`);
      gemm(i, layer, current, '', 0, n, value);
      if (activation !== 'none') {
        const act = next(`layers.${i}.${activation}`);
        activate(i, activation, value, act);
        value = act;
      }
    }
    if (residual) {
      const sum = next(`layers.${i}.residual`);
      nodes.push(node('Add', `layers.${i}.residual`, [value, previous], [sum]));
      value = sum;
    }
    previous = current;
    current = value;
  });
  const graph = message(
    nodes.map((n) => bytesField(1, n)),
    stringField(2, 'mlpkit_mlp'),
    initializers.map((t) => bytesField(5, t)),
    bytesField(11, batchedFloatValue('x', layers[0].inputs)),
    bytesField(12, batchedFloatValue('y', layers[layers.length - 1].outputs)),
  );
  return encode(message(
    intField(1, IR_VERSION),
    stringField(2, 'mlpkit-bench'),
    bytesField(7, graph),
    bytesField(8, message(stringField(1, ''), intField(2, OPSET))), // opset_import: default domain
  ));
}
