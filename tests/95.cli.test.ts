// The command line: NPY and CSV files, train -> predict -> quantize / sparsify round trips in a temp dir
// (the CLI runs in-process through runCli; one test runs the built bin), and the error style:
// one message, a hint, exit code 2 for the command line and 1 otherwise, no stack trace.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, SparseMlp } from '../lib/index.js';
import { formatFloat32, parseCsv } from '../lib/cli/csv.js';
import { readNpy, writeNpy } from '../lib/cli/npy.js';
import { createProgress } from '../lib/cli/progress.js';
import { progressText } from '../lib/cli/commands/quantize.js';
import { lineChartSvg } from '../lib/cli/svg-plot.js';
import { writeOutput } from '../lib/cli/output.js';
import { COMMANDS, runCli } from '../lib/cli/run.js';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { Rng } from '../lib/init.js';
import { backendsUnderTest } from './helpers.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const dir = mkdtempSync(join(tmpdir(), 'mlpkit-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string | Uint8Array) => (out += typeof s === 'string' ? s : Buffer.from(s).toString('latin1')) },
    stderr: { write: (s: string | Uint8Array) => (err += String(s)) },
  });
  return { code, out, err };
}

// 96 rows: x1, x2 in [-1, 1], x3 in [0, 1000) (a column in other units), a text id column, a
// regression target with a large offset and a class label.
function writeDataset(): { x: Float32Array; y: Float32Array; labels: Int32Array } {
  const rng = new Rng(7);
  const rows = 96;
  const x = new Float32Array(rows * 3);
  const y = new Float32Array(rows);
  const labels = new Int32Array(rows);
  const lines = ['id,x1,x2,x3,y,label'];
  for (let r = 0; r < rows; r++) {
    const a = Math.fround(2 * rng.uniform() - 1);
    const b = Math.fround(2 * rng.uniform() - 1);
    const c = Math.fround(1000 * rng.uniform());
    x.set([a, b, c], r * 3);
    y[r] = Math.fround(500 + 3 * a - 2 * b + c / 100);
    labels[r] = a + b > 0 ? 1 : 0;
    lines.push(`row${r},${formatFloat32(a)},${formatFloat32(b)},${formatFloat32(c)},${formatFloat32(y[r])},${labels[r]}`);
  }
  writeFileSync(at('data.csv'), lines.join('\n') + '\n');
  writeFileSync(at('x.npy'), writeNpy(x, [rows, 3]));
  writeFileSync(at('y.npy'), writeNpy(Float64Array.from(y), [rows]));
  writeFileSync(at('labels.npy'), writeNpy(BigInt64Array.from(labels, (v) => BigInt(v)), [rows]));
  return { x, y, labels };
}
const data = writeDataset();

describe('NPY and CSV files', () => {
  it('writeNpy and readNpy round-trip every supported dtype, 1-D and 2-D', () => {
    const arrays = [
      new Float32Array([1.5, -2, 3.25, 4]), new Float64Array([1e-300, 2, 3, 4]),
      new Int32Array([1, -2, 3, 2 ** 31 - 1]), new BigInt64Array([1n, -2n, 3n, 2n ** 40n]),
    ];
    for (const a of arrays) {
      for (const shape of [[4], [2, 2]]) {
        const bytes = writeNpy(a, shape);
        expect((10 + new DataView(bytes.buffer).getUint16(8, true)) % 64).toBe(0); // data 64-byte aligned, as numpy
        const back = readNpy(bytes);
        expect(back.shape).toEqual(shape);
        expect(back.data).toEqual(a);
      }
    }
  });

  it('readNpy reads a version 2.0 header and refuses Fortran order, big-endian and truncated files clearly', () => {
    const v1 = writeNpy(new Float32Array([1, 2]), [2]);
    const headerLen = new DataView(v1.buffer).getUint16(8, true);
    const v2 = new Uint8Array(v1.length + 2);
    v2.set(v1.subarray(0, 8));
    v2[6] = 2;
    new DataView(v2.buffer).setUint32(8, headerLen, true);
    v2.set(v1.subarray(10), 12);
    expect(readNpy(v2).data).toEqual(new Float32Array([1, 2]));

    const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');
    const withHeader = (from: string, to: string) => Uint8Array.from(Buffer.from(text(v1).replace(from, to), 'latin1'));
    expect(() => readNpy(withHeader("'fortran_order': False", "'fortran_order': True "))).toThrow(/Fortran order; save it with np.save\(path, np.ascontiguousarray/);
    expect(() => readNpy(withHeader("'<f4'", "'>f4'"))).toThrow(/dtype '>f4' is not supported/);
    expect(() => readNpy(v1.subarray(0, v1.length - 1))).toThrow(/needs 8 bytes of data but the file holds 7/);
    expect(() => readNpy(new Uint8Array([1, 2, 3]))).toThrow(/not a .npy file/);
  });

  it('parseCsv reads quoted fields and CRLF, keeps text columns as NaN with where they are', () => {
    const t = parseCsv('"name, full",a,b\r\n"x ""y""",1,2.5\r\nz,-3,1e3\r\n');
    expect(t.names).toEqual(['name, full', 'a', 'b']);
    expect(t.rows).toBe(2);
    expect(Array.from(t.data.subarray(1))).toEqual([1, 2.5, NaN, -3, 1000]);
    expect(t.firstText[0]).toEqual({ line: 2, text: 'x "y"' });
    expect(t.firstText[1]).toBeNull();
  });

  it('parseCsv says which line is wrong', () => {
    expect(() => parseCsv('a,b\n1,2\n3\n')).toThrow(/line 3 has 1 fields but the header has 2 columns/);
    expect(() => parseCsv('1,2\n3,4\n')).toThrow(/the first row holds a number \('1' in column 1\)[^]*pass --no-header/);
    expect(() => parseCsv('a,b\n')).toThrow(/no rows of data/);
  });

  it('parseCsv reads line breaks inside quotes, lone CR line ends, trailing commas, and says where rows start', () => {
    const t = parseCsv('note,a,y\n"two\nlines, here",1,2\r\n"x",3,4\n');
    expect(t.names).toEqual(['note', 'a', 'y']);
    expect(Array.from(t.lines)).toEqual([2, 4]);
    expect(Array.from(t.data.subarray(1, 3))).toEqual([1, 2]);
    expect(parseCsv('a,y\r1,2\r3,4\r').rows).toBe(2);
    const trailing = parseCsv('a,b,y,\n1,2,3,\n4,5,6,\n');
    expect(trailing.names).toEqual(['a', 'b', 'y']);
    expect(Array.from(trailing.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => parseCsv('a,"b\n1,2\n')).toThrow(/the quote opened on line 1 is never closed/);
    // Hex, binary and octal literals are ids or codes in a CSV, not numbers (Number() reads them).
    expect(parseCsv('id,y\n0x1f,1\n0b101,2\n').firstText[0]).toEqual({ line: 2, text: '0x1f' });
  });

  it('parseCsv: a quote inside a field is text, and a quoted empty cell is a cell, not a blank line (both once dropped rows)', () => {
    // 5" tall used to open a quoted field that swallowed the lines up to the next quote.
    const t = parseCsv('a,b,note\n1,2,5" tall\n3,4,ok\n5,6,6" wide\n7,8,x\n');
    expect(t.rows).toBe(4);
    expect(Array.from(t.lines)).toEqual([2, 3, 4, 5]);
    expect(t.firstText[2]).toEqual({ line: 2, text: '5" tall' });
    expect(Array.from(t.data.filter((_, i) => i % 3 === 0))).toEqual([1, 3, 5, 7]);
    // One column: "" (Python's csv writes an empty single field so) keeps its row; a bare blank line is skipped.
    const one = parseCsv('a\n1.0\n""\n3.0\n\n4.0\n');
    expect(one.rows).toBe(4);
    expect(Array.from(one.lines)).toEqual([2, 3, 4, 6]);
    expect(one.firstText[0]).toEqual({ line: 3, text: '' });
  });

  it('parseCsv: numeric header cells need --header or --no-header, duplicate names and other separators are refused', () => {
    expect(() => parseCsv('1\n2\n3\n')).toThrow(/first row holds a number[^]*--no-header/);
    expect(() => parseCsv('region,2019,2020\nx,1,2\n')).toThrow(/'2019' in column 2/);
    expect(parseCsv('region,2019,2020\nx,1,2\n', 'yes').names).toEqual(['region', '2019', '2020']);
    const headerless = parseCsv('1\n2\n3\n', 'no');
    expect([headerless.names, headerless.rows, headerless.named, Array.from(headerless.lines)]).toEqual([['0'], 3, false, [1, 2, 3]]);
    expect(() => parseCsv('x,x,y\n1,2,3\n')).toThrow(/names column 'x' twice \(columns 1 and 2\)/);
    expect(() => parseCsv(',a,\n1,2,3\n')).toThrow(/columns 1 and 3 have no name/);
    expect(() => parseCsv('a\tb\ty\n1\t2\t3\n')).toThrow(/no commas but holds tabs/);
    expect(() => parseCsv('a;b;y\n1;2;3\n')).toThrow(/no commas but holds semicolons/);
  });

  it('formatFloat32 writes the shortest decimal that reads back as the same float32', () => {
    for (const v of [0.1, 1 / 3, -2.5e-8, 3.4e38, 123456789, 0]) {
      const f = Math.fround(v);
      expect(Math.fround(Number(formatFloat32(f)))).toBe(f);
    }
    expect(formatFloat32(Math.fround(0.1))).toBe('0.1');
  });
});

describe('progress bar and loss plot', () => {
  it('a terminal bar fits the terminal width (a wrapped line redraws as a trail)', () => {
    let written = '';
    const bar = createProgress({ stream: { write: (s: string) => (written += s), isTTY: true, columns: 60 }, label: 'train ' });
    bar.done('epoch 2889/3000 loss 2.611e-8 val 1.252e-7 acc 100.0% and a long tail of text', 0.96);
    const lines = written.split(/[\r\n]/).filter((l) => l !== '');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(59);
    expect(lines[0]).toMatch(/^train \[#+-*\] {2}96% epoch \d*… \S+ eta \S+$/);
  });

  it('a one-epoch plot marks its point, and epoch ticks are whole numbers', () => {
    const one = lineChartSvg([{ label: 'train', points: [{ x: 1, y: 0.5 }] }], { xLabel: 'epoch' });
    expect(one).toMatch(/<circle cx="[\d.]+" cy="[\d.]+" r="3"/);
    const three = lineChartSvg([{ points: [1, 2, 3].map((x) => ({ x, y: 1 / x })) }]);
    const ticks = [...three.matchAll(/text-anchor="middle">([\d.]+)<\/text>/g)].map((m) => m[1]);
    expect(ticks).toEqual(['1', '2', '3']);
  });
});

describe('train, predict, quantize and sparsify', () => {
  it('trains a regression on CSV columns and predicts the same values as the saved model', async () => {
    const r = await cli('train', at('data.csv'), '--inputs', 'x1,x2,x3', '--target', 'y', '--layers', '16', '--epochs', '40',
      '--batch-size', '16', '--lr', '0.01', '--backend', backend, '--out', at('reg.safetensors'), '--quiet');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/trained 3-16-1 \(relu\) for 40 epochs/);
    expect(readFileSync(at('reg.loss.svg'), 'utf8')).toMatch(/^<svg[^]*<path d="M/);

    // The saved model takes raw columns (the standardisation is folded in): it fits y, whose
    // offset of 500 and column x3 in [0, 1000) would be far off otherwise.
    const net = await Mlp.load(at('reg.safetensors'), { backend });
    const want = net.predict(data.x);
    let se = 0;
    for (let i = 0; i < want.length; i++) se += (want[i] - data.y[i]) ** 2;
    expect(Math.sqrt(se / want.length)).toBeLessThan(1); // the target spans ~13 around 500

    const p = await cli('predict', at('reg.safetensors'), at('data.csv'), '--backend', backend);
    expect(p.code).toBe(0);
    const table = parseCsv(p.out);
    expect(table.names).toEqual(['y']); // the target's name, recorded by train
    expect(Float32Array.from(table.data)).toEqual(want);
  });

  it('trains a classifier from NPY files and writes NPY predictions with their labels in CSV', async () => {
    const r = await cli('train', at('x.npy'), '--target-file', at('labels.npy'), '--task', 'classification', '--layers', '8,8',
      '--epochs', '3', '--backend', backend, '--out', at('cls.safetensors'), '--plot', at('cls.svg'), '--quiet');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/accuracy \d+(\.\d)?% on the training rows/);
    const net = await Mlp.load(at('cls.safetensors'), { backend });
    expect(net.outputs).toBe(2);

    const p = await cli('predict', at('cls.safetensors'), at('x.npy'), '--out', at('out.npy'), '--backend', backend);
    expect(p.code).toBe(0);
    const y = readNpy(readFileSync(at('out.npy')));
    expect(y.dtype).toBe('float32');
    expect(y.shape).toEqual([96, 2]);
    expect(y.data).toEqual(net.predict(data.x));

    const c = await cli('predict', at('cls.safetensors'), at('x.npy'), '--backend', backend);
    const table = parseCsv(c.out);
    expect(table.names).toEqual(['class_0', 'class_1', 'label']);
    const logits = y.data as Float32Array;
    for (let row = 0; row < 96; row++) expect(table.data[row * 3 + 2]).toBe(logits[row * 2 + 1] > logits[row * 2] ? 1 : 0);

    // A model trained on an NPY file knows its inputs by position: a CSV with a header fits it
    // by its numeric columns in order, as a CSV-trained model's fits an NPY file.
    const xs = Array.from({ length: 96 }, (_, row) => Array.from(data.x.subarray(row * 3, row * 3 + 3), (v) => formatFloat32(v)).join(','));
    writeFileSync(at('x-named.csv'), `a,b,c\n${xs.join('\n')}\n`);
    const named = await cli('predict', at('cls.safetensors'), at('x-named.csv'), '--out', at('out2.npy'), '--backend', backend);
    expect(named.err).toBe('wrote 96 rows of 2 outputs to ' + at('out2.npy') + '\n');
    expect(readNpy(readFileSync(at('out2.npy'))).data).toEqual(net.predict(data.x));
  });

  it('quantizes with a calibration file, prints the error report, and the result predicts', async () => {
    const q = await cli('quantize', at('reg.safetensors'), '--weights', 'int8', '--calibration', at('data.csv'), '--backend', backend,
      '--out', at('reg.int8.safetensors'));
    expect(q.code).toBe(0);
    expect(q.out).toMatch(/int8 weights, float activations/);
    expect(q.out).toMatch(/error against the float model on 96 rows/);
    expect(q.out).toMatch(/\| model \| +\| +\| \d[\d.]*% \| \d[\d.]*% \|/);
    // The first layer holds the standardisation of x3 (in [0, 1000)) next to x1, x2 (in [-1, 1]):
    // one int8 scale per output would round x3's weights to 0 (docs/QUANTIZATION.md), so it is
    // equalised, and the whole model stays within a few percent of the float one.
    // 96 calibration rows are >= 2 per input of every layer: 'auto' rounds them all with GPTQ.
    expect(q.out).toMatch(/\| 0 \| 3 -> 16 \| float, equalised, gptq \|/);
    expect(q.out).toMatch(/\(gptq layers chose their codes on these same rows: on other rows their error reads higher\)/);
    const modelRms = Number(/\| model \| +\| +\| (\d[\d.]*)% \|/.exec(q.out)![1]);
    expect(modelRms).toBeLessThan(2);
    const off = await cli('quantize', at('reg.safetensors'), '--weights', 'int8', '--equalize', 'off', '--calibration', at('data.csv'),
      '--backend', backend, '--out', at('reg.int8.off.safetensors'));
    expect(off.code).toBe(0);
    expect(Number(/\| model \| +\| +\| (\d[\d.]*)% \|/.exec(off.out)![1])).toBeGreaterThan(5 * modelRms);
    const nearest = await cli('quantize', at('reg.safetensors'), '--weights', 'int8', '--rounding', 'nearest', '--calibration', at('data.csv'),
      '--backend', backend, '--out', at('reg.int8.nearest.safetensors'));
    expect(nearest.code).toBe(0);
    expect(nearest.out).toMatch(/\| 0 \| 3 -> 16 \| float, equalised \|/);
    expect(nearest.out).not.toMatch(/gptq/);
    const model = await QuantizedMlp.load(at('reg.int8.safetensors'), { backend });
    const p = await cli('predict', at('reg.int8.safetensors'), at('data.csv'), '--backend', backend);
    expect(p.code).toBe(0);
    expect(Float32Array.from(parseCsv(p.out).data)).toEqual(model.predict(data.x));

    const mixed = await cli('quantize', at('reg.safetensors'), '--weights', 'int8,int4', '--asymmetric', '--backend', backend, '--out', at('reg.mixed.safetensors'));
    expect(mixed.code).toBe(0);
    expect(mixed.out).toMatch(/quantised 3-16-1: per layer \(int8, int4 g32 asymmetric\) weights, float activations/);
    const mixedModel = await QuantizedMlp.load(at('reg.mixed.safetensors'), { backend });
    expect(mixedModel.layers.map((l) => l.format)).toEqual(['int8', 'int4']);
    mixedModel.dispose();

    const q4 = await cli('quantize', at('reg.safetensors'), '--weights', 'int4', '--group-size', '32', '--backend', backend, '--out', at('reg.int4.safetensors'));
    expect(q4.code).toBe(0);
    expect(q4.out).toMatch(/no accuracy report: pass --calibration/);
    expect(q4.out).toMatch(/equalised layers \(an input column would otherwise have quantised to ~0\): 0\n/);
  });

  it('quantize draws a progress bar on stderr when it is a terminal, and none with --quiet or in a log', async () => {
    const run = async (tty: boolean, ...extra: string[]) => {
      let err = '';
      const code = await runCli(['quantize', at('reg.safetensors'), '--weights', 'int8', '--calibration', at('data.csv'), '--backend', backend,
        '--out', at('reg.bar.safetensors'), ...extra], { stdout: { write: () => true }, stderr: { write: (s: string | Uint8Array) => (err += String(s)), isTTY: tty } });
      return { code, err };
    };
    const shown = await run(true);
    expect(shown.code).toBe(0);
    expect(shown.err).toMatch(/quantize \[#{24}\] 100% /);
    expect(shown.err).toMatch(/\] +\d+% layer 1\/2 quantised /); // the first report always draws
    expect(shown.err.endsWith('\n')).toBe(true);
    // Each stage's text (a terminal redraws at most every 50 ms, so the run above shows only some).
    const report = { layers: 2, step: 1, steps: 5, elapsedSeconds: 0 };
    expect(progressText({ ...report, stage: 'quantize', layer: 0 })).toBe('layer 1/2 quantised');
    expect(progressText({ ...report, stage: 'calibrate', layer: 1 })).toBe('layer 2/2 calibrated');
    expect(progressText({ ...report, stage: 'measure', layer: null })).toBe('quantised model measured');
    expect(await run(true, '--quiet')).toEqual({ code: 0, err: '' });
    expect(await run(false)).toEqual({ code: 0, err: '' });
  });

  it('takes by default enough calibration rows for GPTQ on its widest layer (2 per input), 1024 at least', async () => {
    const wide = new Mlp({ inputs: 3, layers: [{ units: 600, activation: 'relu' }, { units: 2 }], seed: 4 });
    await wide.save(at('wide.safetensors'));
    wide.dispose();
    const rng = new Rng(12);
    const lines = Array.from({ length: 1300 }, () => [0, 1, 2].map(() => formatFloat32(Math.fround(rng.normal()))).join(','));
    writeFileSync(at('wide.csv'), `a,b,c\n${lines.join('\n')}\n`);
    const auto = await cli('quantize', at('wide.safetensors'), '--weights', 'int8', '--calibration', at('wide.csv'), '--backend', backend,
      '--out', at('wide.int8.safetensors'));
    expect(auto.code).toBe(0);
    expect(auto.out).toMatch(/error against the float model on 1200 rows of/); // 2 x 600 inputs
    expect(auto.out).toMatch(/\| 1 \| 600 -> 2 \| float(, equalised)?, gptq \|/);
    const nearest = await cli('quantize', at('wide.safetensors'), '--weights', 'int8', '--rounding', 'nearest', '--calibration', at('wide.csv'),
      '--backend', backend, '--out', at('wide.int8.safetensors'));
    expect(nearest.out).toMatch(/error against the float model on 1024 rows of/);
    const given = await cli('quantize', at('wide.safetensors'), '--weights', 'int8', '--rows', '100', '--calibration', at('wide.csv'),
      '--backend', backend, '--out', at('wide.int8.safetensors'));
    expect(given.out).toMatch(/error against the float model on 100 rows of/);
    expect(given.out).not.toMatch(/\| 1 \| 600 -> 2 \| [^|]*gptq/); // 100 rows < 2 per input: nearest
  });

  it('sparsifies with a calibration file, prints the per-layer report, and the result predicts', async () => {
    const s = await cli('sparsify', at('reg.safetensors'), '--mode', 'topk', '--density', '0.25', '--calibration', at('data.csv'),
      '--backend', backend, '--out', at('reg.topk.safetensors'));
    expect(s.err).toBe('');
    expect(s.code).toBe(0);
    expect(s.out).toMatch(/sparsified 3-16-1: topk mode on layer 0/);
    expect(s.out).toMatch(/\| 0 \| 3 -> 16 \| topk \| 25\.0% \| k 4 \|/);
    expect(s.out).toMatch(/\| 1 \| 16 -> 1 \| dense \|/);
    expect(s.out).toMatch(/error against the dense model on 96 rows of .*data\.csv .*: RMS \d[\d.]*%, max \d[\d.]*%/);
    const model = await SparseMlp.load(at('reg.topk.safetensors'), { backend });
    expect(model.layers.map((l) => l.mode)).toEqual(['topk', 'dense']);
    expect(model.stats?.samples).toBe(96);
    const p = await cli('predict', at('reg.topk.safetensors'), at('data.csv'), '--backend', backend);
    expect(p.code).toBe(0);
    const table = parseCsv(p.out);
    expect(table.names).toEqual(['y']); // the column names travel with the sparse file too
    expect(Float32Array.from(table.data)).toEqual(model.predict(data.x));

    const pr = await cli('sparsify', at('reg.safetensors'), '--mode', 'predictor', '--k', '6', '--rank', '4', '--epochs', '3',
      '--calibration', at('data.csv'), '--rows', '64', '--dense-from-rows', '5', '--backend', backend, '--out', at('reg.pred.safetensors'));
    expect(pr.code).toBe(0);
    expect(pr.out).toMatch(/\| 0 \| 3 -> 16 \| predictor \| \d[\d.]*% \| k 6, rank 4, exact in tiles of 5\+ rows \| \d[\d.]*% \|/);
    expect((await SparseMlp.load(at('reg.pred.safetensors'), { backend })).layers[0].denseFromRows).toBe(5);
    expect(pr.out).toMatch(/on 64 rows of/);
    const pp = await cli('predict', at('reg.pred.safetensors'), at('x.npy'), '--out', at('pred.npy'), '--backend', backend);
    expect(pp.code).toBe(0);
    expect(readNpy(readFileSync(at('pred.npy'))).data).toEqual((await SparseMlp.load(at('reg.pred.safetensors'), { backend })).predict(data.x));

    const e = await cli('sparsify', at('reg.safetensors'), '--mode', 'exact', '--backend', backend, '--out', at('reg.exact.safetensors'));
    expect(e.code).toBe(0);
    expect(e.out).toMatch(/no density or error report: pass --calibration/);

    const q = await cli('sparsify', at('reg.safetensors'), '--mode', 'exact', '--weights', 'int8', '--backend', backend, '--out', at('reg.exact8.safetensors'));
    expect(q.code).toBe(0);
    expect(q.out).toMatch(/\| 1 \| 16 -> \d+ \| dense \| int8 weights \|/);
    expect((await SparseMlp.load(at('reg.exact8.safetensors'), { backend })).weights).toBe('int8');
    const bad = await cli('sparsify', at('reg.safetensors'), '--mode', 'exact', '--weights', 'int4', '--out', at('x.safetensors'));
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/--weights/);
  });

  it('train without --inputs says which text columns it leaves out', async () => {
    const r = await cli('train', at('data.csv'), '--target', 'y', '--epochs', '1', '--backend', backend, '--out', at('auto.safetensors'));
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^note: leaving out the text column 'id' \(inputs must be numbers; choose the columns with --inputs\)\n/);
    expect((await Mlp.load(at('auto.safetensors'))).inputs).toBe(4); // x1, x2, x3, label
  });

  it('info says whether CUDA is usable and why not', async () => {
    const r = await cli('info');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^cuda +(yes \(.+\)|no \(.+\))$/m);
    const json = JSON.parse((await cli('info', '--json')).out);
    expect(r.out).toMatch(json.cuda.available ? /^cuda +yes/m : /^cuda +no/m);
  });
});

describe('errors and help', () => {
  const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at /);

  it('--help works for every command', async () => {
    for (const c of COMMANDS) {
      const r = await cli(c.name, '--help');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`^Usage: mlpkit ${c.name}`));
    }
    const top = await cli('--help');
    expect(top.out).toMatch(/Commands\n  info/);
    expect((await cli()).code).toBe(2);
  });

  it('serve on a port in use exits 1 and says what to change', async () => {
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    try {
      const r = await cli('serve', at('reg.safetensors'), '--port', String(port));
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`^mlpkit serve: port ${port} on 127.0.0.1 is in use\n {2}choose another --port`));
      noStack(r.err);
    } finally {
      holder.close();
    }
  });

  it('command-line mistakes exit 2 and say what to read', async () => {
    for (const argv of [
      ['frobnicate'],
      ['train', at('data.csv'), '--epoch', '3'],
      ['train', at('data.csv'), '--epochs', 'many'],
      ['train'],
      ['quantize', at('reg.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'exact'],
      ['sparsify', at('reg.safetensors'), '--out', at('s.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'topk', '--out', at('s.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'exact', '--k', '2', '--out', at('s.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'predictor', '--k', '2', '--out', at('s.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '2', '--dense-from-rows', '4', '--out', at('s.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'predictor', '--k', '2', '--calibration', at('data.csv'), '--dense-from-rows', '17', '--out', at('s.safetensors')],
      ['predict', at('reg.safetensors'), at('data.csv'), '--format', 'xlsx'],
      ['predict', at('reg.safetensors'), at('data.csv'), '--format', 'npy', '--out', at('p.csv')],
      ['train', at('data.csv'), '--target', 'y', '--layers', '64,,64'],
      ['quantize', at('reg.safetensors'), '--rows', '10', '--out', at('q.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '2', '--inputs', 'x1', '--out', at('s.safetensors')],
      ['serve', at('reg.safetensors'), '--no-batching', '--max-wait-us', '100'],
      // Flags that do not fit together, found by createServer's own checks before anything loads.
      ['serve', at('reg.safetensors'), '--max-buffered-body-bytes', '10'],
      ['serve', at('reg.safetensors'), '--request-timeout-ms', '1000', '--headers-timeout-ms', '5000'],
      ['bench', '--batch', '100000000000'],
      ['train', at('data.csv'), '--inputs', 'x1', '--target', 'y', '--layers', '1048576,1048576'],
      ['train', at('data.csv'), '--inputs', 'x1,y', '--target', 'y'],
      // reg.safetensors was trained on x1,x2,x3: the same names in another order are a mistake.
      ['predict', at('reg.safetensors'), at('data.csv'), '--inputs', 'x2,x1,x3'],
      ['predict', at('reg.safetensors'), at('data.csv'), '--inputs', 'x1,,x2,x3'],
      ['serve', '--name', 'foo', `x=${at('reg.safetensors')}`],
      ['predict', at('reg.safetensors'), at('x.npy'), '--header'],
      ['train', at('data.csv'), '--target', 'y', '--plot', at('loss.png')],
      ['train', at('data.csv'), '--target', 'price'],
      ['train', at('data.csv'), '--inputs', '0-9'],
      ['quantize', at('reg.safetensors'), '--equalize', 'maybe', '--out', at('q.safetensors')],
      ['quantize', at('reg.safetensors'), '--rounding', 'gptq', '--out', at('q.safetensors')],
      ['quantize', at('reg.safetensors'), '--weights', 'int8,int4,int4', '--out', at('q.safetensors')],
      ['quantize', at('reg.safetensors'), '--weights', 'int8,int5', '--out', at('q.safetensors')],
      ['quantize', at('reg.safetensors'), '--weights', 'int8,int8', '--group-size', '64', '--out', at('q.safetensors')],
      ['quantize', at('reg.safetensors'), '--rounding', 'best', '--out', at('q.safetensors')],
      ['sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '99', '--out', at('again.safetensors')],
      ['serve', `a/b=${at('reg.safetensors')}`],
      ['train', at('data.csv'), '--lr=-1'],
    ]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err).toMatch(/^mlpkit/);
      noStack(r.err);
    }
    expect((await cli('train', at('data.csv'), '--epochs', 'many')).err).toMatch(/--epochs: expected an integer >= 1 but received 'many'/);
    expect((await cli('train', at('data.csv'), '--lr=-1')).err).toMatch(/--lr: expected a number > 0 but received '-1'/);
    expect((await cli('train', at('data.csv'), '--target', 'price')).err).toMatch(/--target: .*data.csv has no column 'price'\n {2}columns are: 0:id, 1:x1/);
    expect((await cli('sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '99', '--out', at('again.safetensors'))).err)
      .toMatch(/Expected an integer between 1 and 16 for --k but received 99\n {2}see mlpkit sparsify --help/);
    expect((await cli('sparsify', at('reg.safetensors'), '--mode', 'topk', '--out', at('s.safetensors'))).err)
      .toMatch(/--mode topk needs exactly one of --k or --density, received neither/);
    expect((await cli('sparsify', at('reg.safetensors'), '--mode', 'predictor', '--k', '2', '--out', at('s.safetensors'))).err)
      .toMatch(/--mode predictor needs --calibration FILE/);
    expect((await cli('sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '2', '--dense-from-rows', '4', '--out', at('s.safetensors'))).err)
      .toMatch(/--dense-from-rows applies to --mode predictor only/);
  });

  it('a range of positions is refused where the header names columns with numbers at other positions (pandas index files)', async () => {
    writeFileSync(at('pandas.csv'), ',0,1,t\n0,1,2,3\n1,2,3,4\n2,3,4,5\n3,4,5,6\n');
    const r = await cli('train', at('pandas.csv'), '--header', '--inputs', '0-1', '--target', 't', '--out', at('pandas.safetensors'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--inputs: '0-1' is ambiguous in .*pandas.csv: its column named '0' is at position 1, not 0\n {2}list the columns one by one/);
  });

  it('bad files and data exit 1 with a message and a hint, no stack trace', async () => {
    {
      // A valid safetensors file whose mlpkit.spec is not JSON.
      const header = JSON.stringify({ __metadata__: { 'mlpkit.spec': '{not json' }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } });
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      writeFileSync(at('damaged.safetensors'), Buffer.concat([len, Buffer.from(header), Buffer.alloc(4)]));
    }
    writeFileSync(at('ragged.csv'), 'a,b\n1,2,3\n');
    writeFileSync(at('messy.csv'), 'a,b,city,y\n1,2,paris,3\n4,,rome,5\n7,8,oslo,9\n');
    writeFileSync(at('big-labels.csv'), 'x,label\n1,0\n2,1999\n3,7\n');
    const cases: [string[], RegExp][] = [
      [['train', at('missing.csv')], /cannot open '.*missing.csv': no such file or directory/],
      [['train', at('ragged.csv')], /ragged.csv: csv: line 2 has 3 fields but the header has 2 columns/],
      [['train', at('messy.csv')], /messy.csv: column 'b' holds numbers in 2 of 3 rows but an empty cell on line 3\n {2}fill or drop the rows/],
      [['train', at('big-labels.csv'), '--task', 'classification', '--val-split', '0'], /target 'label' holds labels up to 1999 but the data has only 3 rows[^]*\n {2}for a numeric target use --task regression/],
      [['train', at('data.csv'), '--inputs', 'id,x1', '--target', 'y'], /column 'id' of .* holds 'row0' on line 2, not a number/],
      [['train', at('data.csv'), '--target', 'y', '--task', 'classification'], /target 'y' holds \d+(\.\d+)? on line \d+; expected integer class labels/],
      [['train', at('data.csv'), '--out', at('no/such/dir/m.safetensors')], /--out: the directory '.*no\/such\/dir' of .* does not exist/],
      // A directory nothing can be created in (as root too): refused before training, not after.
      ...(existsSync('/proc/self') ? [[['train', at('data.csv'), '--target', 'y', '--out', '/proc/m.safetensors'], /--out: cannot write '\/proc\/m.safetensors'[^]*\n {2}choose a directory you can write to/] as [string[], RegExp]] : []),
      [['predict', at('reg.safetensors'), at('x.npy'), '--inputs', '0,1'], /2 columns chosen but the model takes 3 inputs/],
      [['predict', at('data.csv'), at('data.csv')], /data.csv is a text \(CSV\) file, not a model\n {2}give a .safetensors model here; data files go after it \(mlpkit predict MODEL INPUT\)/],
      // A damaged model file is named in the message (the loader alone says only what is wrong).
      [['predict', at('damaged.safetensors'), at('data.csv')], /damaged.safetensors: safetensors: [^]*\n {2}the file is damaged or was not written by mlpkit/],
      [['predict', at('x.npy'), at('data.csv')], /x.npy is an NPY array, not a model/],
      [['train', at('reg.safetensors'), '--target', '0'], /reg.safetensors is a safetensors model, not a data table\n {2}give a CSV or NPY file of rows here/],
      [['predict', dir, at('data.csv')], /cannot open '.*mlpkit-cli-[^']*': is a directory, not a file/],
      [['train', dir], /cannot open '.*mlpkit-cli-[^']*': is a directory, not a file/],
      [['quantize', at('reg.int8.safetensors'), '--out', at('again.safetensors')], /is already quantised\n {2}quantize the float model/],
      [['sparsify', at('reg.int8.safetensors'), '--mode', 'exact', '--out', at('again.safetensors')], /is a quantised model\n {2}sparsify the float model/],
      [['sparsify', at('reg.topk.safetensors'), '--mode', 'exact', '--out', at('again.safetensors')], /is already sparse\n {2}sparsify the float model/],
      [['quantize', at('reg.topk.safetensors'), '--out', at('again.safetensors')], /is a sparse model\n {2}quantize the float model/],
      [['sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '2', '--out', at('no/such/dir/s.safetensors')], /--out: the directory '.*no\/such\/dir' of .* does not exist/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err).toMatch(message);
      noStack(r.err);
    }
  });

  it('an output that names an input or the other output is refused before any work, and the input is kept', async () => {
    const before = readFileSync(at('data.csv'));
    const model = readFileSync(at('reg.safetensors'));
    const cases: [string[], RegExp][] = [
      [['train', at('data.csv'), '--target', 'y', '--out', at('data.csv')], /--out .*data.csv is the training data: writing it would destroy it\n {2}give --out another file name/],
      [['train', at('data.csv'), '--target', 'y', '--out', at('m.safetensors'), '--plot', at('data.csv')], /--plot .*data.csv is the training data/],
      [['train', at('x.npy'), '--target-file', at('y.npy'), '--out', at('y.npy')], /--out .*y.npy is the target file/],
      [['train', at('data.csv'), '--target', 'y', '--out', at('m.safetensors'), '--plot', at('m.safetensors')], /--out and --plot both name .*m.safetensors\n {2}give each its own file name/],
      [['predict', at('reg.safetensors'), at('data.csv'), '--out', at('reg.safetensors')], /--out .*reg.safetensors is the model/],
      [['predict', at('reg.safetensors'), at('data.csv'), '--out', join(dir, '.', 'data.csv')], /--out .*data.csv is the input file/],
      [['quantize', at('reg.safetensors'), '--out', at('reg.safetensors')], /--out .*reg.safetensors is the model being quantised/],
      [['quantize', at('reg.safetensors'), '--calibration', at('data.csv'), '--out', at('data.csv')], /is the calibration file/],
      [['sparsify', at('reg.safetensors'), '--mode', 'topk', '--k', '2', '--out', at('reg.safetensors')], /is the model being sparsified/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err).toMatch(message);
      noStack(r.err);
    }
    expect(readFileSync(at('data.csv')).equals(before)).toBe(true);
    expect(readFileSync(at('reg.safetensors')).equals(model)).toBe(true);
    expect(existsSync(at('m.safetensors'))).toBe(false);
  });

  it('outputs are written whole or not at all: a failed write keeps the old file and leaves no temporary file', async () => {
    const target = at('atomic.bin');
    writeFileSync(target, 'old contents', { mode: 0o640 });
    await writeOutput(target, new Uint8Array([1, 2, 3]));
    expect(Array.from(readFileSync(target))).toEqual([1, 2, 3]);
    expect(statSync(target).mode & 0o777).toBe(0o640);
    await expect(writeOutput(target, 42 as never)).rejects.toThrow();
    expect(Array.from(readFileSync(target))).toEqual([1, 2, 3]);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('MLPKIT_BACKEND=cuda without a usable GPU is one line with what to do instead (was an internal error)', async () => {
    if ((await import('../lib/index.js')).info().cuda.available) return; // a GPU: the backend works
    const run = promisify(execFile);
    const failed = await run(process.execPath, ['dist/cli/main.js', 'predict', at('reg.safetensors'), at('data.csv')],
      { env: { ...process.env, MLPKIT_BACKEND: 'cuda' } }).catch((e) => e);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^mlpkit predict: .*\n {2}use --backend native, or unset MLPKIT_BACKEND\n$/);
    noStack(failed.stderr);
  });

  it('data that would silently give wrong results is refused, naming the file, column and line', async () => {
    writeFileSync(at('no-x3.csv'), 'x1,x2,y\n1,2,3\n');
    writeFileSync(at('huge.csv'), 'x1,x2,x3\n1,2,3\n1,1e39,3\n');
    writeFileSync(at('iris.csv'), 'a,species\n1,setosa\n2,virginica\n');
    writeFileSync(at('tiny.csv'), 'u\n1\n2\n3\n');
    const cases: [string[], RegExp][] = [
      // The model was trained on x1, x2, x3: y must not stand in for x3 by position.
      [['predict', at('reg.safetensors'), at('no-x3.csv')], /no-x3.csv has no column 'x3' \(the model was trained on x1, x2, x3\)\n {2}rename the columns, or choose them with --inputs/],
      [['predict', at('reg.safetensors'), at('huge.csv')], /column 'x2' of .*huge.csv holds 1e\+39 on line 3, beyond the float32 range/],
      [['train', at('iris.csv'), '--task', 'classification'], /target 'species' holds 'setosa' on line 2[^]*\n {2}map the text labels to numbers 0..K-1/],
      [['train', at('tiny.csv'), '--val-split', '0'], /tiny.csv: no numeric columns left for the inputs/],
      [['train', at('data.csv'), '--out', dir], /--out: '.*' is a directory\n {2}give the name of the file to write/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err).toMatch(message);
      noStack(r.err);
    }
    const hex = await cli('train', at('data.csv'), '--epochs', '0x10');
    expect([hex.code, hex.err]).toEqual([2, expect.stringMatching(/--epochs: expected an integer >= 1 but received '0x10'/)]);
    writeFileSync(at('three.csv'), 'a,y\n1,2\n2,4\n3,6\n');
    const few = await cli('train', at('three.csv'), '--epochs', '1', '--out', at('three.safetensors'), '--backend', backend);
    expect(few.code, few.err).toBe(0);
    expect(few.err).toMatch(/note: 3 rows are too few to hold out 10%; training without validation/);
    const layers = await cli('train', at('data.csv'), '--layers', '100000000');
    expect([layers.code, layers.err]).toEqual([2, expect.stringMatching(/--layers: expected an integer between 1 and 1048576/)]);
    if (existsSync('/dev/full')) {
      const full = await cli('predict', at('reg.safetensors'), at('data.csv'), '--out', '/dev/full');
      expect([full.code, full.err]).toEqual([1, expect.stringMatching(/cannot write '\/dev\/full': no space left on the device/)]);
      noStack(full.err);
    }
  });

  it('a headerless CSV reads with --no-header, numeric names with --header; the target file may be the data file', async () => {
    writeFileSync(at('headerless.csv'), data.x.reduce((acc, _, i) => (i % 3 === 0 ? `${acc}${formatFloat32(data.x[i])},${formatFloat32(data.x[i + 1])},${formatFloat32(data.x[i + 2])}\n` : acc), ''));
    const p = await cli('predict', at('reg.safetensors'), at('headerless.csv'), '--no-header', '--backend', backend);
    expect(p.code, p.err).toBe(0);
    expect(parseCsv(p.out).rows).toBe(data.x.length / 3);
    const both = await cli('predict', at('reg.safetensors'), at('headerless.csv'), '--no-header', '--header');
    expect(both.code).toBe(2);
    // --target-file naming the data file itself: y is the target, so not an input as well.
    const same = await cli('train', at('data.csv'), '--target-file', at('data.csv'), '--target', 'y', '--epochs', '1', '--quiet',
      '--out', at('same.safetensors'), '--backend', backend);
    expect(same.code, same.err).toBe(0);
    expect(same.out).toMatch(/trained 4-64-64-1/); // x1, x2, x3, label
  });

  it('a diverging run stops with a hint, writes its loss plot and no model', async () => {
    // lr 1e-3 without standardisation grows the loss over an epoch or two (which one depends on
    // the kernels' rounding): the plot is written once an epoch has finished.
    const r = await cli('train', at('data.csv'), '--target', 'y', '--optimizer', 'sgd', '--lr', '1e-3', '--no-standardize',
      '--epochs', '20', '--out', at('diverged.safetensors'), '--backend', backend, '--quiet');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/training diverged in epoch \d+: [^]*no model[^]*\n {2}lower --lr \(now 0.001\), or drop --no-standardize/);
    noStack(r.err);
    expect(existsSync(at('diverged.safetensors'))).toBe(false);
    if (/in epoch 1:/.test(r.err)) expect(existsSync(at('diverged.loss.svg'))).toBe(false);
    else {
      expect(r.err).toMatch(/no model was written \(the loss so far is in .*diverged.loss.svg\)/);
      expect(readFileSync(at('diverged.loss.svg'), 'utf8')).toMatch(/^<svg[^]*<circle|^<svg[^]*<path/);
    }
    // Diverging within the first epoch: nothing to plot, and the message does not promise a plot.
    const first = await cli('train', at('data.csv'), '--target', 'y', '--optimizer', 'sgd', '--lr', '1e30', '--no-standardize',
      '--epochs', '5', '--batch-size', '1', '--val-split', '0', '--out', at('diverged1.safetensors'), '--backend', backend, '--quiet');
    expect(first.code).toBe(1);
    expect(first.err).toMatch(/training diverged in epoch 1: [^]*no model or plot was written/);
    expect(existsSync(at('diverged1.loss.svg'))).toBe(false);
  });

  it('Ctrl-C saves the model trained so far and exits 130', async () => {
    const out = at('interrupted.safetensors');
    const child = spawn(process.execPath, ['dist/cli/main.js', 'train', at('data.csv'), '--target', 'y', '--epochs', '1000000',
      '--out', out, '--backend', backend], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    // SIGINT once training has begun: train installs its listener before it prints that line.
    child.stderr.on('data', (d) => {
      err += d;
      if (/^training /m.test(err) && !child.killed) child.kill('SIGINT');
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000); // never leave a 1e6-epoch run behind
    const code = await new Promise((resolve) => child.on('close', resolve));
    clearTimeout(guard);
    expect(code, err).toBe(130);
    expect(err).toMatch(/interrupted after \d+ complete epochs/);
    expect((await Mlp.load(out, { backend })).inputs).toBe(4);
  });

  it('the built bin runs as an executable with the same exit codes', async () => {
    // dist/ is built by `npm install` (prepare) and `npm run build`; this checks the shebang,
    // the bin entry and the process exit code, which the in-process tests cannot.
    const run = promisify(execFile);
    const version = await run(process.execPath, ['dist/cli/main.js', '--version']);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(readFileSync('dist/cli/main.js', 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    expect(pkg.bin.mlpkit).toBe('./dist/cli/main.js');
    const failed = await run(process.execPath, ['dist/cli/main.js', 'train', '--epochs', 'x', 'a.csv']).catch((e) => e);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/--epochs: expected an integer/);
    noStack(failed.stderr);
  });
});
