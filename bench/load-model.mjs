// Wall time of saving and loading one large model file: float (Mlp), int8 and int4 g32
// (QuantizedMlp), one 4096 -> 16384 layer (268 MB of float weights). Loading is the start-up
// cost of a server, so it should run at the speed of the disk and one copy, not of a
// per-element JavaScript loop.
// Run: npx tsc -p tsconfig.json && node bench/load-model.mjs [--inputs 4096 --units 16384]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Mlp, QuantizedMlp } from '../dist/index.js';

const { values } = parseArgs({ options: { inputs: { type: 'string', default: '4096' }, units: { type: 'string', default: '16384' }, rounds: { type: 'string', default: '3' } } });
const inputs = Number(values.inputs);
const units = Number(values.units);
const rounds = Number(values.rounds);
const dir = mkdtempSync(join(tmpdir(), 'mlpkit-load-'));
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const net = new Mlp({ inputs, layers: [{ units }] });
const x = Float32Array.from({ length: inputs }, (_, i) => Math.sin(i));
const cases = [
  ['float32', net, (p) => Mlp.load(p)],
  ['int8', net.quantize({ weights: 'int8' }), (p) => QuantizedMlp.load(p)],
  ['int4 g32', net.quantize({ weights: 'int4', groupSize: 32 }), (p) => QuantizedMlp.load(p)],
];
console.log(`# ${inputs} -> ${units}, median of ${rounds}`);
console.log('| model | file MB | save s | load s | load MB/s | predicts identically |');
console.log('| --- | ---: | ---: | ---: | ---: | --- |');
for (const [name, model, load] of cases) {
  const path = join(dir, `${name.replace(' ', '-')}.safetensors`);
  const saves = [];
  const loads = [];
  let same = true;
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    await model.save(path);
    saves.push((performance.now() - t) / 1000);
    t = performance.now();
    const back = await load(path);
    loads.push((performance.now() - t) / 1000);
    const a = model.predict(x);
    const b = back.predict(x);
    same &&= a.every((v, i) => Object.is(v, b[i]));
    back.dispose();
  }
  const mb = statSync(path).size / 1e6;
  console.log(`| ${name} | ${mb.toFixed(0)} | ${median(saves).toFixed(2)} | ${median(loads).toFixed(2)} | ${(mb / median(loads)).toFixed(0)} | ${same ? 'yes' : 'NO'} |`);
}
rmSync(dir, { recursive: true, force: true });
