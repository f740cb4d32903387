// The contract every backend meets. The native addon's `Model` class and the
// pure-TypeScript `ReferenceModel` implement `BackendModel` method for method, so a
// test can run one call on both and compare. Everything here has already been
// validated by lib/validate.ts; backends re-check lengths cheaply but never trust
// user input to be well-formed beyond that.

import type { QuantLayer } from '../quant/format.js';

/** Activation codes shared with native/core/activation.h. Order is ABI. */
export const ACTIVATIONS = [
  'none',
  'relu',
  'leaky_relu',
  'gelu',
  'gelu_tanh',
  'silu',
  'sigmoid',
  'tanh',
  'softplus',
] as const;
export type ActivationName = (typeof ACTIVATIONS)[number];

/** Loss codes shared with native/core/loss.h. Order is ABI. */
export const LOSSES = ['mse', 'l1', 'huber', 'softmax-cross-entropy', 'bce-with-logits'] as const;
export type LossName = (typeof LOSSES)[number];

/** Optimizer codes shared with native/core/optimizer.h. Order is ABI. */
export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** Precision codes of the cuda backend (native/core/cuda/cuda_model.h). Order is ABI. */
export const PRECISIONS = ['fp32', 'fp16', 'bf16'] as const;
export type PrecisionName = (typeof PRECISIONS)[number];

/** Input encoding codes. Order is ABI. */
export const ENCODINGS = ['identity', 'frequency'] as const;
export type EncodingName = (typeof ENCODINGS)[number];

/**
 * The network as both backends see it: numbers only, no strings.
 *
 * Encoded input width `encodedInputs` is
 *   identity:  inputs
 *   frequency: (includeInput ? inputs : 0) + 2 * octaves * inputs
 * Frequency features, in order: [x_0..x_{d-1}] if includeInput, then for k = 0..octaves-1:
 * [sin(2^k * pi * x_0) .. sin(2^k * pi * x_{d-1})], [cos(2^k * pi * x_0) .. cos(2^k * pi * x_{d-1})].
 */
export interface ModelConfig {
  inputs: number;
  encoding: number; // index into ENCODINGS
  octaves: number; // frequency encoding only, else 0
  includeInput: boolean; // frequency encoding only
  units: Int32Array; // output width of each layer, length L
  activations: Int32Array; // index into ACTIVATIONS per layer, length L
  alphas: Float32Array; // negative slope for leaky_relu per layer (0 elsewhere), length L
  bias: Uint8Array; // 1 if the layer has a bias, length L
  gated: Uint8Array; // 1 for a gated layer: 2 * units pre-activations, output act(gate) * up, length L
  residual: Uint8Array; // 1 when the layer's output adds the input of the layer before it, length L
}

/**
 * Flat parameter layout (params, grads and optimizer moments all use it):
 * for each layer l in order: W_l as [rows_l x in_l] row-major (PyTorch nn.Linear layout),
 * then b_l as [rows_l] when bias[l] is 1, with rows_l = units[l], or 2 * units[l] for a gated
 * layer (gate rows first, then up rows). in_0 is the encoded input width, in_l = units[l-1].
 */
export interface BackendModel {
  /** Number of floats in the flat parameter vector. */
  readonly paramCount: number;
  /** Output width (units of the last layer). */
  readonly outputs: number;

  /** out[batch x outputs] = net(x[batch x inputs]). Sync, no allocation of the output. */
  predict(x: Float32Array, batch: number, out: Float32Array): void;
  /**
   * Same off the event loop (native: on a worker thread). x is copied when the call is made and
   * may be reused at once; out is written when the call is done, after checking it is still
   * whole: it holds the result once the promise resolves, not before.
   */
  predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void>;

  /** Copy the flat parameters out / in. */
  getParams(out: Float32Array): void;
  setParams(params: Float32Array): void;
  /** Copy the gradient buffer (filled by lossGrad / backward) out / in. */
  getGrads(out: Float32Array): void;
  setGrads(grads: Float32Array): void;

  /**
   * Forward keeping activations, loss (mean reduction, as PyTorch's default), backward.
   * Overwrites the gradient buffer with dLoss/dParams. When gradInput is given
   * (length batch x inputs) it receives dLoss/dx. Returns the loss.
   * target: Float32Array of batch x outputs for mse, l1, huber, bce-with-logits;
   *         Int32Array of batch class indices in [0, outputs) for softmax-cross-entropy.
   * lossParam: huber delta (ignored by the other losses).
   */
  lossGrad(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    gradInput: Float32Array | null,
  ): number;

  /**
   * Forward keeping activations, then backward from a caller-given dLoss/dOutput
   * (batch x outputs). Overwrites the gradient buffer; fills gradInput when given.
   */
  backward(x: Float32Array, batch: number, gradOutput: Float32Array, gradInput: Float32Array | null): void;

  /**
   * Clip the gradient buffer to global L2 norm `clipNorm` (skip when clipNorm <= 0 or not finite:
   * coef = clipNorm / (norm + 1e-6), applied when coef < 1, as torch.nn.utils.clip_grad_norm_),
   * then apply one optimizer update to the parameters. Returns the norm before clipping.
   * hyper (Float64Array, length 8): [lr, weightDecay, momentum, dampening, nesterov(0|1), beta1, beta2, eps].
   * The step counter t (for Adam bias correction) lives in the model and counts calls.
   */
  optimizerStep(optimizer: number, hyper: Float64Array, clipNorm: number): number;
  /** Zero the optimizer moments and the step counter. */
  resetOptimizer(): void;

  /** lossGrad(x, ..., null) followed by optimizerStep: one training step. Returns the loss. */
  trainStep(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    optimizer: number,
    hyper: Float64Array,
    clipNorm: number,
  ): number;
  /** Same on a worker thread; x and target are copied when the call is made and may be reused at once. */
  trainStepAsync(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    optimizer: number,
    hyper: Float64Array,
    clipNorm: number,
  ): Promise<number>;

  /** Free native memory now. Any later call throws a TypeError. Idempotent. */
  dispose(): void;

  /** Which kernels run this model, where a backend has a choice (cuda: 'fused-fp16', 'gemm-fp32', ...). */
  readonly kernel?: string;
}

/** A quantised network (see lib/quant/format.ts for the layer format). Inference only. */
export interface QuantModelConfig {
  inputs: number;
  encoding: number; // index into ENCODINGS
  octaves: number;
  includeInput: boolean;
  /** Index into QUANT_ACTIVATIONS (lib/quant/format.ts): 0 float (weight-only), 1 int8 (W8A8). */
  activations: number;
}

export interface BackendQuantModel {
  /** out[batch x outputs] = net(x[batch x inputs]). Same rules as BackendModel.predict. */
  predict(x: Float32Array, batch: number, out: Float32Array): void;
  /** Same rules as BackendModel.predictAsync: x copied at the call, out holds the result once it resolves. */
  predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void>;
  dispose(): void;
}

/** A sparse-activation network's input (lib/sparse/): the encoding in front of the first layer. */
export interface SparseModelConfig {
  inputs: number;
  encoding: number; // index into ENCODINGS
  octaves: number;
  includeInput: boolean;
}

/** One layer of a sparse model and what is kept of its outputs (lib/sparse/format.ts). */
export interface SparseLayer {
  inputs: number;
  outputs: number;
  activation: number; // index into ACTIVATIONS
  alpha: number;
  /** [rows x inputs] row-major, PyTorch's layout; rows = outputs, or 2 * outputs when gated (gate rows first). */
  weight: Float32Array;
  bias: Float32Array | null;
  /**
   * Int8 weights: one scale per row, and every weight[o * inputs + p] is f32(scales[o] * q) for
   * an int8 code q in [-127, 127]. The native backend stores the rows it reads sparsely as the
   * codes; the reference computes with `weight` as it is. null: float weights.
   */
  scales: Float32Array | null;
  /** A gated layer: act(gate) * up; sparsified, its units are chosen on act(gate). */
  gated: boolean;
  /** The output adds the input of the layer before (never on a sparsified layer). */
  residual: boolean;
  /** Index into SPARSE_MODES: 0 dense (and always for the last layer). */
  mode: number;
  /** threshold mode: keep |h| > threshold. */
  threshold: number;
  /** topk and predictor modes: units kept per row. */
  k: number;
  /** predictor mode: score = B (A x + a) + b, A [rank x inputs], B [outputs x rank]. */
  rank: number;
  predictorA: Float32Array | null;
  predictorABias: Float32Array | null;
  predictorB: Float32Array | null;
  predictorBBias: Float32Array | null;
  /**
   * predictor mode: a tile of at least this many rows (tiles are SPARSE_TILE_ROWS rows of the
   * batch, in order) skips the prediction and computes the layer exactly, as exact mode would;
   * 0: never. Other modes: 0.
   */
  denseFromRows: number;
}

export interface BackendSparseModel {
  /** out[batch x outputs] = net(x[batch x inputs]). Same rules as BackendModel.predict. */
  predict(x: Float32Array, batch: number, out: Float32Array): void;
  /**
   * Same rules as BackendModel.predictAsync: x may be reused at once, out holds the result once
   * it resolves (the reference backend computes it during the call itself).
   */
  predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void>;
  dispose(): void;
}

export type BackendName = 'native' | 'reference' | 'cuda';

/** Per-model choices a backend may honour (the CPU backends ignore them). */
export interface ModelOptions {
  /** cuda: the precision of the products (fp16 / bf16: the fused tensor-core kernels). */
  precision?: PrecisionName;
}

export interface BackendInfo {
  name: BackendName;
  isa: string; // 'scalar', 'avx2', 'avx512', ... 'js' for the reference, 'sm_90' (the device's) for cuda
  threads: number;
  compiler?: string;
  /** ISAs this machine can run, widest first (what MLPKIT_ISA may name). Native only. */
  isas?: string[];
}

export interface Backend {
  readonly name: BackendName;
  info(): BackendInfo;
  createModel(config: ModelConfig, params: Float32Array, options?: ModelOptions): BackendModel;
  /** Threads one call may use, process-wide. The reference backend runs on one thread. */
  setThreads(n: number): void;
  /**
   * A quantised model over copies of the layers (already validated and quantised by
   * lib/quant). Optional while a backend has no quantised kernels; callers fall back to the
   * reference then.
   */
  createQuantModel?(config: QuantModelConfig, layers: QuantLayer[]): BackendQuantModel;
  /**
   * The model createQuantModel would make, run once on x (batch rows) into out and freed within
   * the call (qmatmul). Optional: without it, qmatmul makes, runs and disposes a model.
   */
  quantMatmul?(config: QuantModelConfig, layers: QuantLayer[], x: Float32Array, batch: number, out: Float32Array): void;
  /** A sparse-activation model over copies of the layers (checked by lib/sparse). Optional as above. */
  createSparseModel?(config: SparseModelConfig, layers: SparseLayer[]): BackendSparseModel;
}
