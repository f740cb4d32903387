// An mlpkit MLP as an ONNX model, built in memory for onnxruntime: per layer one Gemm
// (transB=1, so the weight stays [out, in] as mlpkit and torch.nn.Linear keep it) and, where the
// layer has one, its activation node. Input "x" [batch, inputs], output "y" [batch, outputs],
// with a symbolic batch dimension so one session serves every batch size. Used by the benches
// and by `mlpkit bench`; not part of the public API.
//
// Field numbers are those of onnx/onnx.proto (IR version 8, default-domain opset 17).

import type { LayerParameters } from '../mlp.js';
import type { NormalizedSpec } from '../spec.js';
import { bytesField, intField, message, stringField } from './protobuf.js';

const IR_VERSION = 8;
const OPSET = 17;
const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTRIBUTE_INT = 2; // AttributeProto.AttributeType.INT

// mlpkit activations that are one parameter-free ONNX op. The benches only need relu; the others
// cost one line each. Anything else (leaky_relu's alpha, gelu, ...) is refused, not guessed.
const ACTIVATION_OPS: Record<string, string> = { relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh' };

/** TensorProto: a float32 initializer, little-endian raw_data whatever the host's byte order. */
function floatTensor(name: string, dims: number[], values: Float32Array): Uint8Array {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return message(
    dims.map((d) => intField(1, d)), // dims (repeated int64, unpacked is valid for readers)
    intField(2, FLOAT), // data_type
    stringField(8, name), // name
    bytesField(9, raw), // raw_data
  );
}

/** ValueInfoProto of a float tensor [batch, width]; the first dimension is the symbol "batch". */
function batchedFloatValue(name: string, width: number): Uint8Array {
  const dims = message(
    bytesField(1, stringField(2, 'batch')), // Dimension.dim_param
    bytesField(1, intField(1, width)), // Dimension.dim_value
  );
  const tensorType = message(intField(1, FLOAT), bytesField(2, dims)); // elem_type, shape
  return message(stringField(1, name), bytesField(2, bytesField(1, tensorType))); // name, type.tensor_type
}

function intAttribute(name: string, value: number): Uint8Array {
  return message(stringField(1, name), intField(3, value), intField(20, ATTRIBUTE_INT)); // name, i, type
}

function node(opType: string, name: string, inputs: string[], outputs: string[], attributes: Uint8Array[] = []): Uint8Array {
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
  if (spec.encoding && spec.encoding.type !== 'identity') return `input encoding '${spec.encoding.type}' is not exported`;
  const bad = spec.layers.findIndex((l) => l.activation !== 'none' && !(l.activation in ACTIVATION_OPS));
  return bad < 0 ? null : `activation '${spec.layers[bad].activation}' of layer ${bad} has no exporter`;
}

/**
 * mlpToOnnx(spec, layers) -> a serialized ModelProto
 *   spec: net.spec (normalized: layers[i].activation, encoding)
 *   layers: net.getLayers()
 */
export function mlpToOnnx(
  spec: Pick<NormalizedSpec, 'encoding' | 'layers'>,
  layers: Pick<LayerParameters, 'inputs' | 'outputs' | 'weight' | 'bias'>[],
): Uint8Array {
  const problem = onnxExportProblem(spec);
  if (problem) throw new Error(`mlpToOnnx: ${problem}`);
  if (layers.length !== spec.layers.length) throw new Error('mlpToOnnx: spec and layers disagree on the layer count');
  const nodes: Uint8Array[] = [];
  const initializers: Uint8Array[] = [];
  let current = 'x';
  layers.forEach((layer, i) => {
    const activation = spec.layers[i].activation;
    const last = i === layers.length - 1;
    const gemmOut = last && activation === 'none' ? 'y' : `layers.${i}.linear`;
    const inputs = [current, `layers.${i}.weight`];
    initializers.push(floatTensor(`layers.${i}.weight`, [layer.outputs, layer.inputs], layer.weight));
    if (layer.bias) {
      inputs.push(`layers.${i}.bias`);
      initializers.push(floatTensor(`layers.${i}.bias`, [layer.outputs], layer.bias));
    }
    // Y = X W^T + b: transB reads W as torch stores it, no transposed copy.
    nodes.push(node('Gemm', `layers.${i}.gemm`, inputs, [gemmOut], [intAttribute('transB', 1)]));
    current = gemmOut;
    if (activation !== 'none') {
      const actOut = last ? 'y' : `layers.${i}.${activation}`;
      nodes.push(node(ACTIVATION_OPS[activation], `layers.${i}.${activation}`, [current], [actOut]));
      current = actOut;
    }
  });
  const graph = message(
    nodes.map((n) => bytesField(1, n)),
    stringField(2, 'mlpkit_mlp'),
    initializers.map((t) => bytesField(5, t)),
    bytesField(11, batchedFloatValue('x', layers[0].inputs)),
    bytesField(12, batchedFloatValue('y', layers[layers.length - 1].outputs)),
  );
  return message(
    intField(1, IR_VERSION),
    stringField(2, 'mlpkit-bench'),
    bytesField(7, graph),
    bytesField(8, message(stringField(1, ''), intField(2, OPSET))), // opset_import: default domain
  );
}
