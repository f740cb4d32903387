import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError, Mlp, readSafetensors, writeSafetensors } from '../lib/index.js';
import { readWholeFile, readWholeFileSync, writeWholeFile, writeWholeFileSync } from '../lib/io/whole-file.js';
import { backendsUnderTest, randomArray } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpkit-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Build raw safetensors bytes from a header object and a data section. */
function raw(header: unknown, data: Uint8Array = new Uint8Array(0), headerLenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

describe('whole-file reads and writes in chunks (files over 2 GiB)', () => {
  // The 1 GiB chunks of real use are not testable here; a chunk of 7 bytes runs the same loops,
  // with offsets and lengths that do not divide the file.
  it('round-trips bytes through every pair of sync and async paths, at any chunk size', async () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37 + 11) & 255);
    const path = join(dir, 'chunks.bin');
    for (const chunk of [1, 7, 999, 1000, 1 << 30]) {
      writeWholeFileSync(path, bytes, chunk);
      expect(await readWholeFile(path, chunk)).toEqual(bytes);
      await writeWholeFile(path, bytes.subarray(0, 500), chunk); // a shorter file replaces the longer
      expect(readWholeFileSync(path, chunk)).toEqual(bytes.subarray(0, 500));
    }
    writeWholeFileSync(path, new Uint8Array(0));
    expect((await readWholeFile(path)).length).toBe(0);
    await expect(readWholeFile(join(dir, 'missing.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe.each(backendsUnderTest())('model files on %s', (backend) => {
  it('round-trips through bytes and files with the spec in the metadata', async () => {
    const net = new Mlp(
      { inputs: 3, encoding: { type: 'frequency', octaves: 2 }, layers: [{ units: 5, activation: 'leaky_relu', alpha: 0.2 }, { units: 2, bias: false, activation: 'softplus' }], seed: 4 },
      { backend },
    );
    const x = randomArray(6, 1);
    const back = Mlp.fromSafetensors(net.toSafetensors(), { backend });
    expect(back.spec).toEqual(net.spec);
    expect(back.predict(x)).toEqual(net.predict(x));
    const path = join(dir, `model-${backend}.safetensors`);
    await net.save(path);
    expect((await Mlp.load(path, { backend })).getParameters()).toEqual(net.getParameters());
    net.saveSync(path);
    expect(Mlp.loadSync(path, { backend }).getParameters()).toEqual(net.getParameters());
  });

  it('fromSafetensors reads float tensors in place, but the model owns its copy, at any byte offset', () => {
    // Mlp.fromSafetensors reads aligned F32 tensors as views into the bytes (no second copy of
    // the file): the model must still not share them, and an unaligned tensor is copied.
    const net = new Mlp({ inputs: 7, layers: [{ units: 9, activation: 'relu' }, { units: 3 }], seed: 8 }, { backend });
    const x = randomArray(14, 2);
    const want = net.predict(x);
    const bytes = net.toSafetensors();
    for (const shift of [0, 1, 2, 3]) {
      const shifted = new Uint8Array(bytes.length + shift).subarray(shift);
      shifted.set(bytes);
      const back = Mlp.fromSafetensors(shifted, { backend });
      shifted.fill(0xff); // NaN everywhere, if the model still read the file's bytes
      expect(back.predict(x)).toEqual(want);
      expect(back.getParameters()).toEqual(net.getParameters());
    }
    // readSafetensors still hands out copies: writing one leaves the bytes as they were.
    const t = readSafetensors(bytes).tensors['layers.0.weight'].data as Float32Array;
    t.fill(0);
    expect(Mlp.fromSafetensors(bytes, { backend }).predict(x)).toEqual(want);
  });

  it('writes PyTorch nn.Linear layout: layers.<i>.weight is [out, in]', () => {
    const net = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], seed: 1 }, { backend });
    const file = readSafetensors(net.toSafetensors());
    expect(file.tensors['layers.0.weight'].shape).toEqual([4, 3]);
    expect(file.tensors['layers.0.bias'].shape).toEqual([4]);
    expect(file.tensors['layers.1.weight'].shape).toEqual([2, 4]);
    expect(file.tensors['layers.0.weight'].data).toEqual(net.getLayers()[0].weight);
    expect(JSON.parse(file.metadata['mlpkit.spec'])).toEqual(net.spec);
  });

  it('loads an nn.Sequential state_dict (0.weight, 2.weight, ...) given the activations', () => {
    const w0 = [1, 2, 3, 4, 5, 6]; // [3 out, 2 in]
    const b0 = [0.1, -0.2, 0.3];
    const w2 = [1, -1, 0.5]; // [1 out, 3 in]
    const bytes = writeSafetensors({
      '0.weight': { shape: [3, 2], data: Float32Array.from(w0) },
      '0.bias': { shape: [3], data: Float32Array.from(b0) },
      '2.weight': { shape: [1, 3], data: Float32Array.from(w2) },
    });
    expect(() => Mlp.fromSafetensors(bytes, { backend })).toThrow(/pass \{ activation: 'relu' \}/);
    const net = Mlp.fromSafetensors(bytes, { activation: 'relu', backend });
    expect(net.spec.layers.map((l) => [l.units, l.activation, l.bias])).toEqual([[3, 'relu', true], [1, 'none', false]]);
    // x = [1, -1]: h = relu([1-2+0.1, 3-4-0.2, 5-6+0.3]) = [0, 0, 0]... use [2, -1]:
    // h = relu([0.1, 1.8, 4.3]) ; y = 0.1 - 1.8 + 2.15 = 0.45
    expect(net.predict(Float32Array.of(2, -1))[0]).toBeCloseTo(0.45, 5);
  });

  it('widens F16 and BF16 weights on load', () => {
    // 1.5 in F16 is 0x3E00; -2 in BF16 is 0xC000.
    const f16 = raw({ '0.weight': { dtype: 'F16', shape: [1, 1], data_offsets: [0, 2] } }, Uint8Array.of(0x00, 0x3e));
    expect(Mlp.fromSafetensors(f16, { backend }).predict(Float32Array.of(2))[0]).toBe(3);
    const bf16 = raw({ '0.weight': { dtype: 'BF16', shape: [1, 1], data_offsets: [0, 2] } }, Uint8Array.of(0x00, 0xc0));
    expect(Mlp.fromSafetensors(bf16, { backend }).predict(Float32Array.of(2))[0]).toBe(-4);
  });
});

describe('safetensors reader rejects bad files with an error naming the problem', () => {
  const good = writeSafetensors({ 'layers.0.weight': { shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) } });

  const cases: [string, Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', Uint8Array.of(1, 2, 3), /shorter than the 8-byte header length/],
    ['header length past the end', raw({}, new Uint8Array(0), 1000n), /header length 1000 runs past the end/],
    ['truncated data', good.subarray(0, good.length - 3), /'layers.0.weight': data_offsets end 16 is past the 13 data bytes/],
    ['non-JSON header', (() => { const b = raw({}); b.set(new TextEncoder().encode('{x'), 8); return b; })(), /not valid UTF-8 JSON/],
    ['non-UTF-8 header', (() => { const b = raw({ a: 1 }); b[9] = 0xff; return b; })(), /not valid UTF-8 JSON/],
    ['header not an object', raw([1, 2]), /not a JSON object/],
    ['unknown dtype', raw({ w: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor 'w': unsupported dtype "F8"/],
    ['bad shape', raw({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /tensor 'w': shape \[-1\]/],
    ['shape/offsets mismatch', raw({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /tensor 'w': shape \[3\] of F32 needs 12 bytes but data_offsets span 8/],
    ['reversed offsets', raw({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)), /tensor 'w': data_offsets \[4,0\]/],
    ['overlapping tensors', raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)), /tensors 'a' and 'b' overlap/],
    ['metadata not strings', raw({ __metadata__: { a: 1 } }), /__metadata__\['a'\] is not a string/],
  ];
  it.each(cases)('%s', (_name, bytes, message) => {
    expect(() => readSafetensors(bytes)).toThrow(FileFormatError);
    expect(() => readSafetensors(bytes)).toThrow(message);
  });

  it('rejects files whose tensors do not make an MLP, naming the tensor', () => {
    const mismatch = writeSafetensors({
      '0.weight': { shape: [3, 2], data: new Float32Array(6) },
      '1.weight': { shape: [1, 4], data: new Float32Array(4) },
    });
    expect(() => Mlp.fromSafetensors(mismatch, { activation: 'relu' })).toThrow(/tensor '1.weight' has shape \[1, 4\], expected \[1, 3\]/);
    const badBias = writeSafetensors({
      '0.weight': { shape: [3, 2], data: new Float32Array(6) },
      '0.bias': { shape: [2], data: new Float32Array(2) },
    });
    expect(() => Mlp.fromSafetensors(badBias)).toThrow(/tensor '0.bias' has shape \[2\], expected \[3\]/);
    const extra = writeSafetensors({ '0.weight': { shape: [1, 1], data: new Float32Array(1) }, 'norm.scale': { shape: [1], data: new Float32Array(1) } });
    expect(() => Mlp.fromSafetensors(extra)).toThrow(/'norm.scale' are not weights or biases/);
    const noLayers = writeSafetensors({ foo: { shape: [1], data: new Float32Array(1) } });
    expect(() => Mlp.fromSafetensors(noLayers)).toThrow(/no linear layers found/);
    const intWeights = writeSafetensors({ '0.weight': { shape: [1, 1], data: Int32Array.of(1) } });
    expect(() => Mlp.fromSafetensors(intWeights)).toThrow(/tensor '0.weight' has integer dtype I32/);
    const specMismatch = new Mlp({ inputs: 2, layers: [{ units: 3 }, { units: 1 }] }, { backend: 'reference' }).toSafetensors();
    const file = readSafetensors(specMismatch);
    const spec = JSON.parse(file.metadata['mlpkit.spec']);
    spec.layers[0].units = 4;
    const tampered = writeSafetensors(
      Object.fromEntries(Object.entries(file.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }])),
      { ...file.metadata, 'mlpkit.spec': JSON.stringify(spec) },
    );
    expect(() => Mlp.fromSafetensors(tampered)).toThrow(/tensor 'layers.0.weight' has shape \[3, 2\], expected \[4, 2\]/);
  });

  it('reads F64, I64 (as int32) and writes I64', () => {
    const bytes = writeSafetensors({ a: { shape: [2], data: Float64Array.of(1.5, -2) }, b: { shape: [3], data: Int32Array.of(7, -1, 2), dtype: 'I64' } });
    const file = readSafetensors(bytes);
    expect(file.tensors.a.data).toEqual(Float64Array.of(1.5, -2));
    expect(file.tensors.b.dtype).toBe('I64');
    expect(file.tensors.b.data).toEqual(Int32Array.of(7, -1, 2));
  });

  it('refuses overlapping tensors before it decodes any (a small file could ask for gigabytes)', () => {
    // t0's I64 value does not fit int32: decoding it first would report that instead. And 2000
    // entries over one 1 MiB span were 2000 decoded copies (3 GB) before the overlap error.
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigInt64(0, 2n ** 40n, true);
    const header = { t0: { dtype: 'I64', shape: [1], data_offsets: [0, 8] }, t1: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } };
    expect(() => readSafetensors(raw(header, data))).toThrow(/'t0' and 't1' overlap/);
    const big = new Uint8Array(1 << 20);
    const many = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`t${i}`, { dtype: 'F32', shape: [1 << 18], data_offsets: [0, 1 << 20] }]));
    const before = process.memoryUsage().arrayBuffers;
    expect(() => readSafetensors(raw(many, big))).toThrow(/overlap/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('says that a torch.save checkpoint is not a safetensors file (not "truncated")', () => {
    const zip = new Uint8Array(4096);
    zip.set([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x08, 0x08]);
    const pickle = new Uint8Array(4096);
    pickle.set([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]);
    expect(() => readSafetensors(zip)).toThrow(/not a safetensors file but a zip archive \(a torch.save checkpoint\?\).*save_file/);
    expect(() => readSafetensors(pickle)).toThrow(/not a safetensors file but a Python pickle/);
  });

  it('writes only what it reads back: metadata key __proto__, I64 within int32, F32 without new infinities', () => {
    const meta = JSON.parse('{"__proto__": "a", "other": "b"}') as Record<string, string>;
    const bytes = writeSafetensors({ a: { shape: [1], data: Float32Array.of(1) } }, meta);
    expect(Object.keys(readSafetensors(bytes).metadata).sort()).toEqual(['__proto__', 'other']);
    expect(() => writeSafetensors({ s: { shape: [1], data: Float64Array.of(2 ** 31), dtype: 'I64' } })).toThrow(RangeError);
    expect(readSafetensors(writeSafetensors({ s: { shape: [2], data: Float64Array.of(2 ** 31 - 1, -(2 ** 31)), dtype: 'I64' } })).tensors.s.data).toEqual(Int32Array.of(2 ** 31 - 1, -(2 ** 31)));
    expect(() => writeSafetensors({ w: { shape: [2], data: Float64Array.of(1, 1e300), dtype: 'F32' } })).toThrow(/1e\+300 at 1 does not fit F32/);
    // Infinities and NaN given as such, and values that merely round, are written as they are.
    const f = readSafetensors(writeSafetensors({ w: { shape: [3], data: Float64Array.of(Infinity, NaN, 1e-50), dtype: 'F32' } })).tensors.w.data;
    expect(Array.from(f)).toEqual([Infinity, NaN, 0]);
  });

  // The writer and reader move whole tensors with typed-array sets on a little-endian host; these
  // pin the bytes to the format's little-endian layout, at offsets no element type aligns with.
  it('writes every dtype little-endian at unaligned offsets, as a DataView would', () => {
    const tensors = {
      a: { shape: [3], data: Int8Array.of(-127, 0, 5) },
      b: { shape: [2], data: Float32Array.of(1.5, -3.25) },
      c: { shape: [1], data: Uint8Array.of(255) },
      d: { shape: [2], data: Float64Array.of(Math.PI, -0) },
      e: { shape: [2], data: Int32Array.of(-2, 70000) },
      f: { shape: [2], data: Float64Array.of(0.1, 1e-40), dtype: 'F32' as const },
      g: { shape: [2], data: Int32Array.of(-128, 127), dtype: 'I8' as const },
    };
    const bytes = writeSafetensors(tensors);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true)))));
    const base = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const dv = new DataView(bytes.buffer);
    const at = (name: string) => base + header[name].data_offsets[0];
    expect([dv.getInt8(at('a')), dv.getInt8(at('a') + 2)]).toEqual([-127, 5]);
    expect(at('b') % 4).not.toBe(0);
    expect([dv.getFloat32(at('b'), true), dv.getFloat32(at('b') + 4, true)]).toEqual([1.5, -3.25]);
    expect(dv.getUint8(at('c'))).toBe(255);
    expect(dv.getFloat64(at('d'), true)).toBe(Math.PI);
    expect(Object.is(dv.getFloat64(at('d') + 8, true), -0)).toBe(true);
    expect([dv.getInt32(at('e'), true), dv.getInt32(at('e') + 4, true)]).toEqual([-2, 70000]);
    expect([dv.getFloat32(at('f'), true), dv.getFloat32(at('f') + 4, true)]).toEqual([Math.fround(0.1), Math.fround(1e-40)]);
    expect([dv.getInt8(at('g')), dv.getInt8(at('g') + 1)]).toEqual([-128, 127]);
    const back = readSafetensors(bytes).tensors;
    expect(back.a.data).toEqual(Int32Array.of(-127, 0, 5));
    expect(back.b.data).toEqual(Float32Array.of(1.5, -3.25));
    expect(back.d.data).toEqual(Float64Array.of(Math.PI, -0));
    expect(back.e.data).toEqual(Int32Array.of(-2, 70000));
    expect(back.g.data).toEqual(Int32Array.of(-128, 127));
  });

  it('reads tensors whose data starts at an unaligned byte (an unpadded header)', () => {
    const data = new Uint8Array(13);
    const dv = new DataView(data.buffer);
    dv.setFloat32(0, -2.5, true);
    dv.setInt16(4, -300, true);
    dv.setInt16(6, 12345, true);
    dv.setInt32(8, -123456, true);
    dv.setInt8(12, -7);
    const header = {
      f: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      h: { dtype: 'I16', shape: [2], data_offsets: [4, 8] },
      i: { dtype: 'I32', shape: [1], data_offsets: [8, 12] },
      b: { dtype: 'I8', shape: [1], data_offsets: [12, 13] },
    };
    // One trailing space when needed makes the data section start at an odd offset.
    const text = JSON.stringify(header);
    const json = new TextEncoder().encode(text.length % 2 === 0 ? `${text} ` : text);
    const odd = new Uint8Array(8 + json.length + data.length);
    new DataView(odd.buffer).setBigUint64(0, BigInt(json.length), true);
    odd.set(json, 8);
    odd.set(data, 8 + json.length);
    expect((8 + json.length) % 2).toBe(1);
    const t = readSafetensors(odd).tensors;
    expect(t.f.data).toEqual(Float32Array.of(-2.5));
    expect(t.h.data).toEqual(Int32Array.of(-300, 12345));
    expect(t.i.data).toEqual(Int32Array.of(-123456));
    expect(t.b.data).toEqual(Int32Array.of(-7));
  });

  it('pads the header so the data section is 8-byte aligned', () => {
    const bytes = writeSafetensors({ a: { shape: [1], data: Float32Array.of(1) } }, { k: 'v' });
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    expect(readSafetensors(bytes).metadata).toEqual({ k: 'v' });
    expect(f32Bytes([1]).length).toBe(4);
  });
});

describe('parameters that are not finite, options that do not apply', () => {
  it('a NaN or infinite weight or bias is a FileFormatError naming the tensor and the element', () => {
    const w = Float32Array.of(1, 2, 3, 4, 5, 6);
    const state = (weight: Float32Array, bias: Float32Array) => writeSafetensors({
      '0.weight': { shape: [2, 3], data: weight },
      '0.bias': { shape: [2], data: bias },
    });
    expect(() => Mlp.fromSafetensors(state(Float32Array.of(1, 2, 3, 4, Infinity, 6), Float32Array.of(0, 0)))).toThrow(FileFormatError);
    expect(() => Mlp.fromSafetensors(state(Float32Array.of(1, 2, 3, 4, Infinity, 6), Float32Array.of(0, 0))))
      .toThrow(/tensor '0.weight' holds Infinity at \[1, 1\]; parameters must be finite/);
    expect(() => Mlp.fromSafetensors(state(w, Float32Array.of(0, NaN)))).toThrow(/tensor '0.bias' holds NaN at \[1\]/);
    // F64 past float32's range becomes Infinity in the model: refused too.
    const wide = writeSafetensors({ '0.weight': { shape: [1, 2], data: Float64Array.of(1, 1e300), dtype: 'F64' } } as never);
    expect(() => Mlp.fromSafetensors(wide)).toThrow(/tensor '0.weight' holds 1e\+300 at \[0, 1\]/);
    expect(Mlp.fromSafetensors(state(w, Float32Array.of(0, 0))).outputs).toBe(2);
  });

  it('state_dict options on a file with an mlpkit spec are ignored with one warning', async () => {
    const bytes = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 1 }], seed: 1 }).toSafetensors();
    const warnings: Error[] = [];
    const listen = (w: Error) => warnings.push(w);
    process.on('warning', listen);
    try {
      const net = Mlp.fromSafetensors(bytes, { activation: 'tanh' });
      expect(net.spec.layers[0].activation).toBe('relu');
      Mlp.fromSafetensors(bytes, { activations: ['gelu'] });
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', listen);
    }
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'MLPKIT_LOAD_OPTION_IGNORED');
    expect(ours.length).toBe(1); // once per process (vitest gives each file its own)
    expect(ours[0].message).toMatch(/options.activation applies to files without an mlpkit spec/);
  });
});
