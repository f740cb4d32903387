// File fuzzing (issue #6): the safetensors readers (readSafetensors, Mlp.fromSafetensors / load,
// QuantizedMlp.fromSafetensors / load) fed truncated, bit-flipped and hand-crafted hostile files.
// Every file either loads as a model that works or is refused with a FileFormatError
// (ERR_MLPKIT_INVALID_FILE) whose message says what is wrong; never an out-of-bounds read (the
// sanitizer run covers that), a stack overflow, an uncoded error or a hang (a hang fails this
// file on vitest's timeout).

import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError, Mlp, QuantizedMlp, readSafetensors, writeSafetensors } from '../lib/index.js';
import { fuzzParams } from './fuzz-support.js';
import { backendsUnderTest, randomArray } from './helpers.js';

/** A file from a header given as JSON text (so duplicate keys and raw bytes can be written). */
function craft(headerText: string | Uint8Array, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = typeof headerText === 'string' ? new TextEncoder().encode(headerText) : headerText;
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'mlpkit-fuzz-files-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(backendsUnderTest())('file fuzz on %s', (backend) => {
  const net = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], seed: 3 }, { backend });
  const ours = net.toSafetensors();
  const foreign = writeSafetensors({
    '0.weight': { shape: [4, 3], data: randomArray(12, 1) },
    '0.bias': { shape: [4], data: randomArray(4, 2) },
    '2.weight': { shape: [2, 4], data: randomArray(8, 3) },
  });
  const quantFiles = [
    net.quantize({ weights: 'int8', activations: 'int8', backend }).toSafetensors(),
    net.quantize({ weights: 'int4', groupSize: 32, symmetric: false, backend }).toSafetensors(),
  ];
  /**
   * Every reader on one file: each returns a model that predicts, or throws a FileFormatError with
   * a message naming the problem. Returns how many readers accepted it.
   */
  function readAll(bytes: Uint8Array, what: string): number {
    let accepted = 0;
    const readers: [string, () => { inputs: number; outputs: number; predict(x: Float32Array): Float32Array; dispose(): void } | null][] = [
      ['readSafetensors', () => (readSafetensors(bytes), null)],
      ['Mlp.fromSafetensors', () => Mlp.fromSafetensors(bytes, { backend })],
      ['Mlp.fromSafetensors (relu)', () => Mlp.fromSafetensors(bytes, { backend, activation: 'relu' })],
      ['QuantizedMlp.fromSafetensors', () => QuantizedMlp.fromSafetensors(bytes, { backend })],
    ];
    for (const [name, read] of readers) {
      try {
        const model = read();
        accepted++;
        if (model) {
          // A file that loads is a model that works.
          expect(model.predict(new Float32Array(2 * model.inputs)).length).toBe(2 * model.outputs);
          model.dispose();
        }
      } catch (err) {
        // A file with no spec needs the caller to name the activations: that one is the caller's
        // TypeError (documented in the README), not the file's.
        const missingActivations = err instanceof TypeError && (err as { code?: string }).code === 'ERR_INVALID_ARG_TYPE' && /the activations are unknown/.test(err.message);
        if (missingActivations && name === 'Mlp.fromSafetensors') continue;
        if (!(err instanceof FileFormatError)) {
          throw new Error(`${what} / ${name}: ${(err as Error)?.constructor?.name} ${(err as { code?: string }).code}: ${String((err as Error)?.message).slice(0, 300)}`, { cause: err });
        }
        expect(err.code).toBe('ERR_MLPKIT_INVALID_FILE');
        expect(err.message).toMatch(/^safetensors: \S/);
        expect(err.message.length, `${what} / ${name}: message length`).toBeLessThan(2000);
      }
    }
    return accepted;
  }

  it('every truncation of a model file is refused', () => {
    for (const file of [ours, foreign, ...quantFiles]) {
      for (let n = 0; n < file.length; n++) {
        expect(readAll(file.subarray(0, n), `prefix ${n}`), `prefix of ${n} bytes`).toBe(0);
      }
      // Buffer views and copies of the whole file read the same as the file.
      expect(readAll(Buffer.from(file), 'Buffer')).toBeGreaterThan(0);
    }
  });

  it('bit flips anywhere: the file loads as a working model or is refused', () => {
    const flips = fc.record({
      file: fc.constantFrom(0, 1, 2, 3),
      flips: fc.array(fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 6 }),
      // Flips in the 8-byte length and the header are the interesting ones; weights are bytes too.
      where: fc.constantFrom('anywhere', 'length', 'header', 'header'),
    });
    const files = [ours, foreign, ...quantFiles];
    fc.assert(
      fc.property(flips, (c) => {
        const file = files[c.file].slice();
        const headerEnd = 8 + Number(new DataView(file.buffer).getBigUint64(0, true));
        for (const { at, bit } of c.flips) {
          const i = c.where === 'length' ? at % 8 : c.where === 'header' ? 8 + (at % (headerEnd - 8)) : at % file.length;
          file[i] ^= 1 << bit;
        }
        readAll(file, `flips ${JSON.stringify(c.flips)}`);
      }),
      fuzzParams(400),
    );
  });

  // A valid header as an object, mutated at one path: the kinds of damage a hostile file can carry.
  const JSON_VALUES = [null, true, 0, -1, 1.5, 2 ** 53, 1e308, -0, '', 'F32', [], [0], [[0]], {}, { a: 1 }, [-1, 4], [4, 0], [0, 2 ** 60], 'x'.repeat(300)];
  const mutation = fc.record({
    target: fc.constantFrom('dtype', 'shape', 'data_offsets', 'entry', 'metadata', 'metadata-value', 'spec', 'quant', 'name', 'root'),
    value: fc.constantFrom(...JSON_VALUES),
    tensor: fc.nat(),
    field: fc.constantFrom('inputs', 'layers', 'encoding', 'units', 'activation', 'bias', 'outputs', 'format', 'groupSize', 'symmetric', 'alpha', 'version', 'activations', 'seed', 'init'),
    name: fc.constantFrom('__proto__', 'constructor', 'toString', '1'.repeat(200_000) + '.weight', 'layers.00.weight', 'layers.1.weight', '', 'é'),
  });

  function mutate(file: Uint8Array, m: typeof mutation extends fc.Arbitrary<infer T> ? T : never): Uint8Array {
    const hl = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + hl))) as Record<string, Record<string, unknown>>;
    const data = file.subarray(8 + hl);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const name = names[m.tensor % names.length];
    const meta = header.__metadata__ as Record<string, unknown>;
    const setIn = (json: string, field: string, value: unknown): string => {
      const o = JSON.parse(json) as Record<string, unknown>;
      const layers = o.layers as Record<string, unknown>[];
      if (field in o) o[field] = value;
      else if (Array.isArray(layers) && layers.length) layers[m.tensor % layers.length][field] = value;
      return JSON.stringify(o);
    };
    switch (m.target) {
      case 'dtype': case 'shape': case 'data_offsets': header[name][m.target] = m.value; break;
      case 'entry': header[name] = m.value as never; break;
      case 'metadata': header.__metadata__ = m.value as never; break;
      case 'metadata-value': if (meta) meta[Object.keys(meta)[m.tensor % Object.keys(meta).length]] = m.value; break;
      case 'spec': if (meta && typeof meta['mlpkit.spec'] === 'string') meta['mlpkit.spec'] = setIn(meta['mlpkit.spec'], m.field, m.value); break;
      case 'quant': if (meta && typeof meta['mlpkit.quant'] === 'string') meta['mlpkit.quant'] = setIn(meta['mlpkit.quant'], m.field, m.value); break;
      case 'name': { const e = header[name]; delete header[name]; Object.defineProperty(header, m.name, { value: e, enumerable: true, writable: true, configurable: true }); break; }
      case 'root': return craft(JSON.stringify(m.value), data);
    }
    return craft(JSON.stringify(header), data);
  }

  it('hand-crafted hostile headers: wrong dtypes, shapes, offsets, metadata, spec and quant fields, names', () => {
    const files = [ours, foreign, ...quantFiles];
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 2, 3), mutation, (f, m) => {
        readAll(mutate(files[f], m), `${m.target} ${m.field} ${JSON.stringify(m.value)?.slice(0, 40)}`);
      }),
      fuzzParams(500),
    );
  });

  it('structural attacks: giant lengths, overlaps, duplicate keys, deep nesting, non-UTF-8, huge claimed sizes', () => {
    const f32 = (n: number) => new Uint8Array(Float32Array.from({ length: n }, (_, i) => i / 10).buffer);
    const w = (o: number[]) => `{"dtype":"F32","shape":[2,3],"data_offsets":[${o.join(',')}]}`;
    const cases: [string, Uint8Array][] = [
      ['header length 2^64 - 1', craft('{}', new Uint8Array(0), 2n ** 64n - 1n)],
      ['header length 2^53', craft('{}', new Uint8Array(0), 2n ** 53n)],
      ['header length past the end by one', craft('{}', new Uint8Array(0), 3n)],
      ['header length zero', craft('', f32(4), 0n)],
      ['offsets past the end', craft(`{"0.weight":${w([0, 24])}}`, f32(3))],
      ['offsets past 2^53', craft(`{"0.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[9007199254740992,9007199254741016]}}`, f32(6))],
      ['overlapping tensors', craft(`{"0.weight":${w([0, 24])},"1.weight":${w([12, 36])}}`, f32(9))],
      ['the same tensor twice (duplicate key)', craft(`{"0.weight":${w([0, 24])},"0.weight":${w([24, 48])}}`, f32(12))],
      ['duplicate key after an escape', craft(`{"0.weight":${w([0, 24])},"\\u0030.weight":${w([24, 48])}}`, f32(12))],
      ['duplicate metadata key', craft(`{"__metadata__":{"a":"1","a":"2"},"0.weight":${w([0, 24])}}`, f32(6))],
      ['duplicate key inside mlpkit.spec', craft(`{"__metadata__":{"mlpkit.spec":${JSON.stringify('{"inputs":3,"inputs":3,"layers":[{"units":2}]}')}},"layers.0.weight":${w([0, 24])}}`, f32(6))],
      ['deep nesting in the header', craft(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)],
      ['deep nesting in a shape', craft(`{"0.weight":{"dtype":"F32","shape":${'['.repeat(50_000)}${']'.repeat(50_000)},"data_offsets":[0,0]}}`)],
      ['deep nesting in mlpkit.spec', craft(`{"__metadata__":{"mlpkit.spec":${JSON.stringify('['.repeat(100_000) + ']'.repeat(100_000))}},"layers.0.weight":${w([0, 24])}}`, f32(6))],
      ['deep nesting in mlpkit.quant', craft(`{"__metadata__":{"mlpkit.quant":${JSON.stringify('{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000))}}}`)],
      ['non-UTF-8 header', craft(Uint8Array.of(0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d))],
      ['overlong UTF-8 encoding', craft(Uint8Array.of(0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d))],
      ['lone surrogate in UTF-8', craft(Uint8Array.of(0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d))],
      ['NUL bytes in the header', craft('{"a\u0000":1}\u0000')],
      ['metadata not an object', craft(`{"__metadata__":[1,2]}`)],
      ['metadata value a number', craft(`{"__metadata__":{"mlpkit.spec":5}}`)],
      ['dtype an object', craft(`{"w":{"dtype":{"x":1},"shape":[1],"data_offsets":[0,4]}}`, f32(1))],
      ['dtype toString', craft(`{"w":{"dtype":"toString","shape":[1],"data_offsets":[0,4]}}`, f32(1))],
      ['shape product past 2^53', craft(`{"w":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}`, f32(1))],
      ['a 200,000-digit layer name (regex backtracking)', craft(`{"${'1'.repeat(200_000)}x.weight":${w([0, 24])},"${'1'.repeat(200_000)}":${w([24, 48])}}`, f32(12))],
      ['layer index twice (1 and 01)', craft(`{"1.weight":${w([0, 24])},"01.weight":${w([24, 48])}}`, f32(12))],
      ['a tensor named __proto__', craft(`{"__proto__":${w([0, 24])}}`, f32(6))],
      ['spec claims 2^31 parameters, file holds 6 floats', craft(`{"__metadata__":{"mlpkit.spec":${JSON.stringify(JSON.stringify({ inputs: 65536, layers: [{ units: 32768 }] }))}},"layers.0.weight":${w([0, 24])}}`, f32(6))],
      ['spec with a layer 2^20 wide on a 2x3 weight', craft(`{"__metadata__":{"mlpkit.spec":${JSON.stringify(JSON.stringify({ inputs: 3, layers: [{ units: 2 ** 20 }] }))}},"layers.0.weight":${w([0, 24])}}`, f32(6))],
      ['2000 foreign layers', craft(`{${Array.from({ length: 2000 }, (_, i) => `"${i}.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[${4 * i},${4 * i + 4}]}`).join(',')}}`, f32(2000))],
      ['quant: W8A8 int8 layer wider than int32 accumulates', craft(`{"__metadata__":{"mlpkit.quant":${JSON.stringify(JSON.stringify({ version: 1, inputs: 200000, encoding: { type: 'identity' }, activations: 'int8', layers: [{ inputs: 200000, outputs: 1, format: 'int8', groupSize: 200000, symmetric: true, activation: 'none', alpha: 0, bias: false }] }))}},"layers.0.qweight":{"dtype":"I8","shape":[1,200000],"data_offsets":[0,200000]},"layers.0.scales":{"dtype":"F32","shape":[1,1],"data_offsets":[200000,200004]}}`, new Uint8Array(200004))],
    ];
    for (const [what, bytes] of cases) {
      expect(readAll(bytes, what), what).toBeLessThanOrEqual(1); // at most readSafetensors itself
    }
    // The container-level attacks are refused by readSafetensors already.
    for (const [what, bytes] of cases.slice(0, 22)) {
      if (/overlong|lone|NUL bytes|toString|nesting in mlpkit|duplicate key inside|metadata value a number/.test(what)) continue;
      expect(() => readSafetensors(bytes), what).toThrow(FileFormatError);
    }
  });

  it('quantised files with broken values: -128 codes, NaN scales, zero points past 15, padding nibbles, bad groups', () => {
    const q4 = net.quantize({ weights: 'int4', groupSize: 32, symmetric: false, backend });
    const q8 = net.quantize({ weights: 'int8', backend });
    const breakers: [string, () => Uint8Array][] = [
      ['int8 code -128', () => { const t = q8.getLayers()[0]; (t.weights as Int8Array)[0] = -128; return filesWith(q8, 0, t); }],
      ['NaN scale', () => { const t = q8.getLayers()[0]; t.scales[0] = NaN; return filesWith(q8, 0, t); }],
      ['negative scale', () => { const t = q4.getLayers()[0]; t.scales[0] = -1; return filesWith(q4, 0, t); }],
      ['zero point 16', () => { const t = q4.getLayers()[0]; t.zeros![0] = 16; return filesWith(q4, 0, t); }],
      ['padding nibble', () => { const t = q4.getLayers()[0]; (t.weights as Uint8Array)[15] = 0xff; return filesWith(q4, 0, t); }],
    ];
    function filesWith(q: QuantizedMlp, i: number, layer: ReturnType<QuantizedMlp['getLayers']>[number]): Uint8Array {
      const file = readSafetensors(q.toSafetensors());
      const tensors: Record<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array | Int8Array; dtype: 'F32' | 'I8' | 'U8' }> = {};
      for (const [name, t] of Object.entries(file.tensors)) tensors[name] = { shape: t.shape, data: t.data as Float32Array, dtype: t.dtype as 'F32' };
      tensors[`layers.${i}.qweight`].data = layer.weights;
      tensors[`layers.${i}.scales`].data = layer.scales;
      if (layer.zeros) tensors[`layers.${i}.zeros`].data = layer.zeros;
      return writeSafetensors(tensors, { ...file.metadata });
    }
    for (const [what, make] of breakers) {
      const bytes = make();
      expect(() => QuantizedMlp.fromSafetensors(bytes, { backend }), what).toThrow(FileFormatError);
    }
    q4.dispose();
    q8.dispose();
  });

  it('load and loadSync from disk: the same answers as from bytes; a missing file is the fs error', async () => {
    const files: [string, Uint8Array][] = [['ours', ours], ['truncated', ours.subarray(0, ours.length - 1)], ['quant', quantFiles[0]], ['flipped', craft('{"0.weight":1}')]];
    for (const [name, bytes] of files) {
      const path = join(tmp, `${backend}-${name}.safetensors`);
      writeFileSync(path, bytes);
      for (const load of [() => Mlp.load(path, { backend }), async () => Mlp.loadSync(path, { backend }), () => QuantizedMlp.load(path, { backend }), async () => QuantizedMlp.loadSync(path, { backend })]) {
        try {
          (await load()).dispose();
        } catch (err) {
          expect(err, `${name}`).toBeInstanceOf(FileFormatError);
        }
      }
    }
    await expect(Mlp.load(join(tmp, 'missing.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(() => QuantizedMlp.loadSync(join(tmp, 'missing.safetensors'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
