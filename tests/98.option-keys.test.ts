// Unknown option names are RangeErrors naming the full path and the names expected, for every
// options object of the public API (a misspelt `batchsize: 8` used to train with the default
// batch size without a word), while every documented name is still accepted. And a load option
// that does not fit the file (options.activations of the wrong length) is the caller's
// RangeError, not a FileFormatError.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FileFormatError, Mlp, QuantizedMlp, SparseMlp, createServer, qmatmul, quantizeLayer, writeSafetensors,
} from '../lib/index.js';
import { backendsUnderTest, randomArray, randomLabels } from './helpers.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const dir = mkdtempSync(join(tmpdir(), 'mlpkit-option-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SPEC = { inputs: 3, layers: [{ units: 8, activation: 'relu' as const }, { units: 2 }], seed: 1 };

function caught(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}

async function caughtAsync(fn: () => Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the call to reject');
}

/** A coded RangeError (ERR_OUT_OF_RANGE) whose message matches. */
function expectRangeError(err: Error & { code?: string }, message: RegExp): void {
  expect(err, err.message).toBeInstanceOf(RangeError);
  expect(err).not.toBeInstanceOf(FileFormatError);
  expect(err.code).toBe('ERR_OUT_OF_RANGE');
  expect(err.message).toMatch(message);
}

const unknown = (path: string, expected: string) =>
  new RegExp(`^Unknown option ${path.replace(/[.[\]]/g, (c) => `\\${c}`)}\\b.*\\(expected some of ${expected}\\)$`);

/** A PyTorch nn.Sequential state_dict with three linear layers: 2 -> 4 -> 4 -> 1. */
function torchFile(): Uint8Array {
  return writeSafetensors({
    '0.weight': { shape: [4, 2], data: randomArray(8, 1) },
    '0.bias': { shape: [4], data: randomArray(4, 2) },
    '2.weight': { shape: [4, 4], data: randomArray(16, 3) },
    '2.bias': { shape: [4], data: randomArray(4, 4) },
    '4.weight': { shape: [1, 4], data: randomArray(4, 5) },
  });
}

describe('Mlp spec and constructor options', () => {
  it('rejects unknown names at the top level, in a layer and in the encoding', () => {
    expectRangeError(caught(() => new Mlp({ inputs: 3, layers: [{ units: 2, activaton: 'relu' }] } as never)),
      unknown('spec.layers[0].activaton', 'units, activation, bias, alpha, gated, residual'));
    expectRangeError(caught(() => new Mlp({ inputs: 3, layers: [{ units: 4 }, { units: 2, residul: true }] } as never)),
      unknown('spec.layers[1].residul', 'units, activation, bias, alpha, gated, residual'));
    expectRangeError(caught(() => new Mlp({ ...SPEC, seeds: 3 } as never)), unknown('spec.seeds', 'inputs, layers, encoding, init, seed'));
    expectRangeError(caught(() => new Mlp({ ...SPEC, encoding: { type: 'frequency', octaves: 2, includeinput: false } } as never)),
      unknown('spec.encoding.includeinput', 'type, octaves, includeInput'));
    // The names depend on the type: an identity encoding takes no octaves.
    expectRangeError(caught(() => new Mlp({ ...SPEC, encoding: { type: 'identity', octaves: 2 } } as never)),
      /^Unknown option spec\.encoding\.octaves for encoding type 'identity' \(expected some of type\)$/);
  });

  it('rejects unknown constructor options', () => {
    expectRangeError(caught(() => new Mlp(SPEC, { backends: 'reference' } as never)), unknown('options.backends', 'backend, precision, parameters'));
  });

  it('accepts every documented name', () => {
    // Frequency encoding of 3 inputs, 2 octaves, input kept: 3 + 2 * 2 * 3 = 15 features.
    const spec = {
      inputs: 3,
      encoding: { type: 'frequency' as const, octaves: 2, includeInput: true },
      layers: [
        { units: 8, activation: 'silu' as const, bias: true, alpha: 0.01, gated: true, residual: false },
        { units: 15, activation: 'leaky_relu' as const, bias: false, alpha: 0.2, gated: false, residual: true },
        { units: 2 },
      ],
      init: 'he-uniform' as const,
      seed: 4,
    };
    const twin = new Mlp(spec, { backend: 'reference' });
    const net = new Mlp(spec, { backend: 'reference', precision: 'fp32', parameters: twin.getParameters() });
    expect(net.spec.layers[1].residual).toBe(true);
    expect(net.getParameters()).toEqual(twin.getParameters());
    expect(new Mlp({ ...SPEC, encoding: { type: 'identity' } }).spec.encoding).toEqual({ type: 'identity' });
    // A normalized spec (every default filled in) is itself a valid spec.
    expect(new Mlp(net.spec, { backend: 'reference' }).spec).toEqual(net.spec);
  });
});

describe('trainer options', () => {
  const net = new Mlp(SPEC, { backend });
  const adam = { type: 'adam' as const, lr: 1e-3 };

  it('rejects unknown names in the options, the loss, the optimizer and the schedule', () => {
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: adam, clipnorm: 1 } as never)),
      unknown('options.clipnorm', 'loss, optimizer, clipNorm, schedule'));
    expectRangeError(caught(() => net.trainer({ loss: { type: 'huber', delta: 1, beta: 2 }, optimizer: adam } as never)),
      unknown('options.loss.beta', 'type, delta'));
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3, weight_decay: 0.1 } } as never)),
      unknown('options.optimizer.weight_decay', 'type, lr, betas, eps, weightDecay'));
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: { ...adam }, schedule: { type: 'cosine', minlr: 0 } } as never)),
      unknown('options.schedule.minlr', 'type, steps, minLr'));
  });

  it('the optimizer and schedule names depend on the type', () => {
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1, betas: [0.9, 0.99] } } as never)),
      /^Unknown option options\.optimizer\.betas for optimizer type 'sgd' \(expected some of type, lr, momentum, dampening, nesterov, weightDecay\)$/);
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 0.1, momentum: 0.9 } } as never)),
      /^Unknown option options\.optimizer\.momentum for optimizer type 'adam' \(expected some of type, lr, betas, eps, weightDecay\)$/);
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: { type: 'adamw', lr: 0.1, nesterov: true } } as never)),
      /options\.optimizer\.nesterov for optimizer type 'adamw'/);
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: adam, schedule: { type: 'cosine', stepSize: 10 } } as never)),
      /^Unknown option options\.schedule\.stepSize for schedule type 'cosine' \(expected some of type, steps, minLr\)$/);
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: adam, schedule: { type: 'step', stepSize: 10, minLr: 0 } } as never)),
      /options\.schedule\.minLr for schedule type 'step' \(expected some of type, stepSize, gamma\)/);
    expectRangeError(caught(() => net.trainer({ loss: 'mse', optimizer: adam, schedule: { type: 'constant', gamma: 0.5 } } as never)),
      /options\.schedule\.gamma for schedule type 'constant' \(expected some of type\)/);
  });

  it('accepts every documented name', () => {
    const optimizers = [
      { type: 'sgd' as const, lr: 0.01, momentum: 0.9, dampening: 0, nesterov: true, weightDecay: 1e-4 },
      { type: 'adam' as const, lr: 1e-3, betas: [0.8, 0.99] as [number, number], eps: 1e-7, weightDecay: 0 },
      { type: 'adamw' as const, lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 },
    ];
    const schedules = [{ type: 'constant' as const }, { type: 'step' as const, stepSize: 2, gamma: 0.5 }, { type: 'cosine' as const, steps: 10, minLr: 1e-5 }];
    const x = randomArray(4 * 3, 1);
    const y = randomArray(4 * 2, 2);
    for (const optimizer of optimizers) {
      for (const schedule of schedules) {
        const trainer = net.trainer({ loss: { type: 'huber', delta: 0.5 }, optimizer, clipNorm: 1, schedule });
        expect(Number.isFinite(trainer.step(x, y))).toBe(true);
      }
    }
  });
});

describe('fit options', () => {
  const net = new Mlp(SPEC, { backend });
  const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } });
  const x = randomArray(8 * 3, 3);
  const y = randomArray(8 * 2, 4);

  it('rejects unknown names in the options and in options.validation', async () => {
    expectRangeError(await caughtAsync(() => trainer.fit(x, y, { epochs: 1, batchsize: 1 } as never)),
      unknown('options.batchsize', 'epochs, batchSize, shuffle, seed, validation, onProgress, signal'));
    expectRangeError(await caughtAsync(() => trainer.fit(x, y, { epochs: 1, validation: { x, y } } as never)),
      unknown('options.validation.y', 'x, target'));
    expect(trainer.stepCount).toBe(0);
  });

  it('accepts every documented name', async () => {
    let calls = 0;
    const result = await trainer.fit(x, y, {
      epochs: 2, batchSize: 4, shuffle: false, seed: 1,
      validation: { x, target: y },
      onProgress: () => void calls++,
      signal: new AbortController().signal,
    });
    expect(result.history).toHaveLength(2);
    expect(result.history[0].valLoss).toBeTypeOf('number');
    expect(calls).toBeGreaterThan(0);
  });
});

describe('gradients requests', () => {
  const net = new Mlp(SPEC, { backend });
  const x = randomArray(2 * 3, 5);
  const target = randomArray(2 * 2, 6);

  it('rejects unknown names, and a loss beside gradOutput', () => {
    expectRangeError(caught(() => net.gradients(x, { loss: 'huber', target, delat: 0.5 } as never)), unknown('request.delat', 'loss, target, delta'));
    expectRangeError(caught(() => net.gradients(x, { gradOutput: new Float32Array(4), scale: 2 } as never)), unknown('request.scale', 'gradOutput'));
    expectRangeError(caught(() => net.gradients(x, { gradOutput: new Float32Array(4), loss: 'mse' } as never)),
      /^request\.loss does not apply with request\.gradOutput/);
    expectRangeError(caught(() => net.gradients(x, { loss: { type: 'huber', delat: 1 }, target } as never)), unknown('request.loss.delat', 'type, delta'));
  });

  it('accepts every documented name', () => {
    const a = net.gradients(x, { loss: 'huber', target, delta: 0.5 });
    const b = net.gradients(x, { loss: { type: 'huber', delta: 0.5 }, target });
    expect(a.loss).toBe(b.loss);
    expect(net.gradients(x, { gradOutput: new Float32Array(4).fill(1) }).loss).toBeUndefined();
  });
});

describe('load options', () => {
  const torch = torchFile();
  const torchPath = join(dir, 'torch.safetensors');
  writeFileSync(torchPath, torch);
  const net = new Mlp(SPEC, { backend });
  const ours = net.toSafetensors();
  const missing = join(dir, 'no-such-file.safetensors');

  it('Mlp.fromSafetensors / load / loadSync reject unknown names (before reading the file)', async () => {
    const names = 'activation, outputActivation, activations, encoding, alpha, backend, precision';
    expectRangeError(caught(() => Mlp.fromSafetensors(torch, { activaton: 'relu' } as never)), unknown('options.activaton', names));
    expectRangeError(caught(() => Mlp.fromSafetensors(ours, { backends: 'reference' } as never)), unknown('options.backends', names));
    expectRangeError(await caughtAsync(() => Mlp.load(missing, { activaton: 'relu' } as never)), unknown('options.activaton', names));
    expectRangeError(caught(() => Mlp.loadSync(missing, { activaton: 'relu' } as never)), unknown('options.activaton', names));
    expectRangeError(caught(() => Mlp.fromSafetensors(torch, { activation: 'relu', encoding: { type: 'frequency', octave: 1 } } as never)),
      unknown('options.encoding.octave', 'type, octaves, includeInput'));
  });

  it('accepts every documented name', async () => {
    // A frequency encoding of 1 octave with the input kept makes 3 features per input: a file
    // whose first layer takes 6 = 2 x 3 of them is a model of 2 inputs.
    const encoded = writeSafetensors({
      '0.weight': { shape: [4, 6], data: randomArray(24, 7) },
      '2.weight': { shape: [1, 4], data: randomArray(4, 8) },
    });
    const loaded = Mlp.fromSafetensors(encoded, {
      activation: 'relu', outputActivation: 'sigmoid', activations: ['leaky_relu', 'none'],
      encoding: { type: 'frequency', octaves: 1, includeInput: true }, alpha: 0.1, backend, precision: 'fp32',
    });
    expect(loaded.inputs).toBe(2);
    expect(loaded.spec.layers.map((l) => l.activation)).toEqual(['leaky_relu', 'none']);
    expect(loaded.spec.layers[0].alpha).toBe(0.1);
    expect((await Mlp.load(torchPath, { activation: 'relu', backend })).spec.layers).toHaveLength(3);
    expect(Mlp.loadSync(torchPath, { activation: 'relu', backend }).outputs).toBe(1);
    expect(Mlp.fromSafetensors(ours, { backend, precision: 'fp32' }).getParameters()).toEqual(net.getParameters());
  });

  it('options.activations of the wrong length is a RangeError, not a FileFormatError (also through load / loadSync)', async () => {
    const message = /the file has 3 linear layers but options\.activations lists 1/;
    expectRangeError(caught(() => Mlp.fromSafetensors(torch, { activations: ['relu'] })), message);
    expectRangeError(await caughtAsync(() => Mlp.load(torchPath, { activations: ['relu'] })), message);
    expectRangeError(caught(() => Mlp.loadSync(torchPath, { activations: ['relu', 'relu', 'relu', 'none'] })), /lists 4/);
  });

  it('an options.encoding that does not fit the file is a RangeError too; a broken file is still a FileFormatError', () => {
    // 2 inputs in the file; a frequency encoding of 1 octave makes 3 features per input.
    expectRangeError(caught(() => Mlp.fromSafetensors(torch, { activation: 'relu', encoding: { type: 'frequency', octaves: 1 } })),
      /options\.encoding.*tensor '0\.weight' takes 2 inputs, which is not a multiple of the 3 features/);
    const broken = writeSafetensors({ '0.weight': { shape: [3, 2], data: new Float32Array(6) }, '1.weight': { shape: [1, 4], data: new Float32Array(4) } });
    const err = caught(() => Mlp.fromSafetensors(broken, { activation: 'relu' }));
    expect(err).toBeInstanceOf(FileFormatError);
    expect(err.code).toBe('ERR_MLPKIT_INVALID_FILE');
  });

  it('a spec stored in a file keeps loading with fields this version does not know (a file-format question)', () => {
    const file = writeSafetensors(
      { 'layers.0.weight': { shape: [2, 3], data: randomArray(6, 9) }, 'layers.0.bias': { shape: [2], data: randomArray(2, 10) } },
      { 'mlpkit.spec': JSON.stringify({ inputs: 3, layers: [{ units: 2, activation: 'tanh', futureField: 1 }], encoding: { type: 'identity', extra: true }, comment: 'x' }) },
    );
    const loaded = Mlp.fromSafetensors(file, { backend });
    expect(loaded.spec.layers[0].activation).toBe('tanh');
  });

  it('QuantizedMlp and SparseMlp loaders reject unknown names and accept backend', async () => {
    const q = net.quantize({ weights: 'int8', backend });
    const qBytes = q.toSafetensors();
    const qPath = join(dir, 'q.safetensors');
    writeFileSync(qPath, qBytes);
    expectRangeError(caught(() => QuantizedMlp.fromSafetensors(qBytes, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expectRangeError(await caughtAsync(() => QuantizedMlp.load(missing, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expectRangeError(caught(() => QuantizedMlp.loadSync(missing, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expect((await QuantizedMlp.load(qPath, { backend })).predict(randomArray(3, 1))).toEqual(q.predict(randomArray(3, 1)));

    const s = await net.sparsify({ mode: 'exact', backend });
    const sBytes = s.toSafetensors();
    const sPath = join(dir, 's.safetensors');
    writeFileSync(sPath, sBytes);
    expectRangeError(caught(() => SparseMlp.fromSafetensors(sBytes, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expectRangeError(await caughtAsync(() => SparseMlp.load(missing, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expectRangeError(caught(() => SparseMlp.loadSync(missing, { backnd: 'reference' } as never)), unknown('options.backnd', 'backend'));
    expect(SparseMlp.loadSync(sPath, { backend }).predict(randomArray(3, 1))).toEqual(s.predict(randomArray(3, 1)));
  });
});

describe('quantize, sparsify and qmatmul (strict before; the helper now lives in lib/validate.ts)', () => {
  const net = new Mlp(SPEC, { backend });

  it('rejects unknown names with the same message form', async () => {
    expectRangeError(caught(() => net.quantize({ weights: 'int4', groupsize: 64 } as never)), /^Unknown option options\.groupsize \(expected some of weights, groupSize, /);
    expectRangeError(await caughtAsync(() => net.sparsify({ mode: 'topk', targetdensity: 0.5 } as never)), /^Unknown option options\.targetdensity \(expected some of mode, /);
    const layer = quantizeLayer(randomArray(8, 1), null, 4, 2, 'none', 0, { format: 'int8' });
    expectRangeError(caught(() => qmatmul(randomArray(4, 2), layer, { activation: 'int8' } as never)), unknown('options.activation', 'activations, out, backend'));
    expectRangeError(caught(() => quantizeLayer(randomArray(8, 1), null, 4, 2, 'none', 0, { format: 'int4', group: 32 } as never)), unknown('options.group', 'format, groupSize, symmetric, equalize'));
  });

  it('accepts every documented qmatmul name', () => {
    const layer = quantizeLayer(randomArray(8, 1), null, 4, 2, 'none', 0, { format: 'int8', symmetric: true });
    const out = new Float32Array(2);
    expect(qmatmul(randomArray(4, 2), layer, { activations: 'float', out, backend: 'reference' })).toBe(out);
  });

  it('QuantizedMlp.fromLayers: unknown names refused, every documented one accepted', () => {
    const layer = quantizeLayer(randomArray(8, 1), null, 4, 2, 'none', 0, { format: 'int8' });
    expectRangeError(caught(() => QuantizedMlp.fromLayers([layer], { activation: 'int8' } as never)), unknown('options.activation', 'activations, backend'));
    const m = QuantizedMlp.fromLayers([layer], { activations: ['int8'], backend: 'reference' });
    expect(m.layers[0].activations).toBe('int8');
    m.dispose();
  });
});

describe('createServer and close options', () => {
  const net = new Mlp(SPEC, { backend });

  it('rejects unknown names', async () => {
    const names = 'models, batching, maxBatchRows, maxWaitUs, maxQueueRows, queueTimeoutMs, maxBodyBytes, maxBufferedBodyBytes, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, writeTimeoutMs, inlineMacs, retryAfterSeconds, onBatch, keepV8Pretenuring, directHttp, nativeHttp';
    expectRangeError(caught(() => createServer({ models: { m: net }, maxBatchRow: 5 } as never)), unknown('options.maxBatchRow', names));
    const server = createServer({ models: { m: net } });
    expectRangeError(caught(() => server.close({ grace: 100 } as never)), unknown('options.grace', 'graceMs'));
    await server.close({ graceMs: 100 });
  });

  it('accepts every documented name', async () => {
    const server = createServer({
      models: { m: net }, batching: true, maxBatchRows: 64, maxWaitUs: 0, maxQueueRows: 128, queueTimeoutMs: 1000, maxBodyBytes: 4096, maxBufferedBodyBytes: 8192,
      headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000, writeTimeoutMs: 1000, inlineMacs: 1000, retryAfterSeconds: 2, onBatch: () => {},
      keepV8Pretenuring: true, directHttp: false, nativeHttp: false,
    });
    expect(server.options.maxBatchRows).toBe(64);
    expect(server.options.directHttp).toBe(false);
    expect(server.options.nativeHttp).toBe(false);
    expect(() => createServer({ models: { m: net }, keepV8Pretenuring: 'yes' as never })).toThrow(/Expected a boolean for options\.keepV8Pretenuring/);
    expect(() => createServer({ models: { m: net }, directHttp: 1 as never })).toThrow(/Expected a boolean for options\.directHttp/);
    expect(() => createServer({ models: { m: net }, nativeHttp: 'no' as never })).toThrow(/Expected a boolean for options\.nativeHttp/);
    await server.close({ graceMs: 10 });
  });
});

describe('writeSafetensors tensors', () => {
  it('rejects unknown names in a tensor and accepts shape, data and dtype', () => {
    expectRangeError(caught(() => writeSafetensors({ a: { shape: [1], data: Int32Array.of(1), dtpye: 'I8' } as never })),
      unknown("tensors['a'].dtpye", 'shape, data, dtype'));
    expect(writeSafetensors({ a: { shape: [1], data: Int32Array.of(1), dtype: 'I8' } }).length).toBeGreaterThan(8);
  });
});

describe('the labels target of a classification trainer', () => {
  it('is unaffected (a regression check of the unknown-name checks around it)', () => {
    const net = new Mlp({ inputs: 3, layers: [{ units: 3 }] }, { backend });
    const trainer = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'sgd', lr: 0.1 } });
    expect(Number.isFinite(trainer.step(randomArray(6, 1), randomLabels(2, 3, 2)))).toBe(true);
  });
});
