// One adapter per thing the peer bench times, all with the same shape so bench/peers.mjs can
// loop over them: load() once (a peer that fails to load is reported and skipped), open() per
// network, then predictor()/trainer() per cell. Every adapter starts from the same flat
// parameters (mlpkit's layout), so the checks and the ratios compare like with like.
//
//   predictor(x, batch) -> { run(): void | Promise, output(): Float32Array, close() }
//   trainer(loss, x, target, batch) -> { step(): number | Promise<number>, close() }
// An adapter with trains: false gets a '-' train row saying noTrainReason; predictOnly: no row.

import { availableParallelism } from 'node:os';
import { Mlp, info } from '../../dist/index.js';
import { oneHot } from './data.mjs';
import { mlpToOnnx } from './onnx-model.mjs';
import { loadTfjsWasm, tfjsMlp, tfjsTrainer } from './tfjs-model.mjs';

const ADAM = { type: 'adam', lr: 1e-3 }; // torch defaults for betas and eps, as tfjsTrainer

function message(err) {
  return err instanceof Error ? err.message : String(err);
}

/** mlpkit's own backends: native sync, native async and the TypeScript reference. */
function mlpkitAdapter({ key, label, backend, isAsync, maxBatch }) {
  return {
    key,
    label,
    maxBatch,
    predictOnly: isAsync, // an async path of predict; its training is the native row
    trains: true,
    available: false,
    reason: '',
    details: '',
    async load() {
      const i = info(); // the bench header prints it whole
      if (backend === 'native' && !i.native.available) throw new Error(`native addon did not load: ${i.native.error}`);
    },
    async open(spec, parameters) {
      const net = new Mlp(spec, { backend, parameters });
      return {
        predictor(x, batch) {
          const out = new Float32Array(batch * net.outputs);
          return {
            run: isAsync ? () => net.predictAsync(x, out) : () => net.predict(x, out),
            output: () => out,
            close() {},
          };
        },
        trainer(loss, x, target) {
          // A fresh copy per cell: every backend's first step starts from the same weights.
          const copy = new Mlp(spec, { backend, parameters });
          const trainer = copy.trainer({ loss, optimizer: ADAM });
          return { step: () => trainer.step(x, target), close: () => copy.dispose() };
        },
        close: () => net.dispose(),
      };
    },
  };
}

function onnxRuntimeAdapter() {
  let ort;
  const threads = availableParallelism();
  const sessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  };
  return {
    key: 'ort',
    label: 'onnxruntime-node',
    maxBatch: Infinity,
    trains: false,
    noTrainReason: 'no training API in onnxruntime-node',
    available: false,
    reason: '',
    details: '',
    async load() {
      const mod = await import('onnxruntime-node');
      ort = mod.default ?? mod;
      const version = ort.env?.versions?.node ?? ort.env?.versions?.common ?? '?';
      this.threads = threads;
      this.details =
        `${version}, cpu EP, intraOpNumThreads ${threads}, interOpNumThreads 1, graphOptimizationLevel all,` +
        ' output tensors preallocated (fetches)';
    },
    async open(spec, parameters) {
      const layers = new Mlp(spec, { backend: 'reference', parameters });
      const bytes = mlpToOnnx(layers.spec, layers.getLayers());
      layers.dispose();
      const session = await ort.InferenceSession.create(bytes, sessionOptions);
      const inputs = spec.inputs;
      const outputs = spec.layers[spec.layers.length - 1].units;
      return {
        predictor(x, batch) {
          const out = new Float32Array(batch * outputs);
          // Preallocated output, as mlpkit's predict(x, out): the fair comparison at large batch.
          const feeds = { x: new ort.Tensor('float32', x, [batch, inputs]) };
          const fetches = { y: new ort.Tensor('float32', out, [batch, outputs]) };
          return { run: () => session.run(feeds, fetches), output: () => out, close() {} };
        },
        close: () => session.release(),
      };
    },
  };
}

function tfjsAdapter() {
  let tf;
  return {
    key: 'tfjs',
    label: 'tfjs-wasm',
    maxBatch: Infinity,
    trains: true,
    available: false,
    reason: '',
    details: '',
    async load() {
      const loaded = await loadTfjsWasm();
      tf = loaded.tf;
      this.threads = loaded.threads;
      this.details =
        `${loaded.version}, wasm backend, ${loaded.simd ? 'SIMD' : 'no SIMD'}, ${loaded.threads} thread(s)` +
        ' (tfjs disables wasm threads under Node)';
    },
    async open(spec, parameters) {
      const ref = new Mlp(spec, { backend: 'reference', parameters });
      const layers = ref.getLayers();
      const normalized = ref.spec;
      ref.dispose();
      const model = tfjsMlp(tf, normalized, layers);
      return {
        predictor(x, batch) {
          const xT = tf.tensor2d(x, [batch, spec.inputs]);
          let last = null;
          return {
            run() {
              // predict's batchSize defaults to 32: without it a batch of 16384 runs as 512
              // separate forward passes plus a concat, which measures tfjs-layers, not the kernels.
              const y = model.predict(xT, { batchSize: batch });
              last = y.dataSync(); // the copy out is part of the call, as predict(x, out)'s write
              y.dispose();
            },
            output: () => last,
            close: () => xT.dispose(),
          };
        },
        trainer(loss, x, target, batch) {
          const copy = tfjsMlp(tf, normalized, layers);
          const outputs = layers[layers.length - 1].outputs;
          const xT = tf.tensor2d(x, [batch, spec.inputs]);
          const tT = tf.tensor2d(loss === 'mse' ? target : oneHot(target, outputs), [batch, outputs]);
          const trainer = tfjsTrainer(tf, copy, loss);
          return {
            step: () => trainer.step(xT, tT),
            close() {
              trainer.dispose();
              tf.dispose([xT, tT]);
              copy.dispose();
            },
          };
        },
        close: () => model.dispose(),
      };
    },
  };
}

/** The rows of every table, in display order. mlpkit native is the baseline of every ratio. */
export function createAdapters() {
  return [
    mlpkitAdapter({ key: 'native', label: 'mlpkit native', backend: 'native', isAsync: false, maxBatch: Infinity }),
    mlpkitAdapter({ key: 'async', label: 'mlpkit predictAsync', backend: 'native', isAsync: true, maxBatch: Infinity }),
    onnxRuntimeAdapter(),
    tfjsAdapter(),
    // Float64 TypeScript: past a few hundred rows a cell takes minutes and shows nothing new.
    mlpkitAdapter({ key: 'reference', label: 'mlpkit reference', backend: 'reference', isAsync: false, maxBatch: 256 }),
  ];
}

/** load() every adapter; a failure marks it unavailable with the reason instead of throwing. */
export async function loadAdapters(adapters) {
  for (const a of adapters) {
    try {
      await a.load();
      a.available = true;
    } catch (err) {
      a.available = false;
      a.reason = message(err);
    }
  }
  return adapters;
}
