// How low can int4 group quantisation take the error on Gaussian weights, whatever the scale?
//
//   node bench/int4-floor.mjs [--groups N] [--group-size G] [--seed S]
//
// Draws N groups of G independent N(0, 1) weights and codes each group on 16 uniform levels,
// w ~= s * (u - z) with u in [0, 15], three ways:
//   - mlpkit's search (lib/quant/quantize.ts): symmetric, s = max|w| / d, d in 7 ... 9;
//   - the best symmetric scale: 401 scales from max|w| / 4 to max|w| / 14, the best kept;
//   - the best asymmetric scale and zero point: 401 scales across the range x every z in [0, 15].
// and prints each one's relative RMS error, sqrt(sum (w - w_q)^2 / sum w^2), the measure of
// issue #4's accuracy target (<= 5% for int4 g32). The fine searches bound every rule a
// quantiser of this format could use (the search grid is 100x finer than the error it finds).
// Rounding is float64 here; the float32 steps of lib/quant/format.ts change the result in the
// fourth digit.

import { benchArgs, usageError } from './support/args.mjs';

const USAGE = 'Usage: node bench/int4-floor.mjs [--groups N (3000)] [--group-size G (32)] [--seed S (12345)]';

const { values: args } = benchArgs(USAGE, {
  options: { groups: { type: 'string' }, 'group-size': { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean' } },
});
const integer = (name, raw, fallback, min = 1) => {
  const v = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(v) || v < min) usageError(`--${name} must be an integer >= ${min}, got '${raw}'`);
  return v;
};
const GROUPS = integer('groups', args.groups, 3000);
const G = integer('group-size', args['group-size'], 32);
const STEPS = 400;

let state = integer('seed', args.seed, 12345, 0) >>> 0;
const uniform = () => {
  state = (Math.imul(state, 1103515245) + 12345) >>> 0;
  return (state + 0.5) / 2 ** 32;
};
const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());

const w = new Float64Array(G);
/** Squared error of the group coded with scale s and zero point z on levels [lo, hi] (z subtracted). */
function squaredError(s, z, lo, hi) {
  let e = 0;
  for (const v of w) {
    const q = Math.min(hi, Math.max(lo, Math.round(v / s) + z)) - z;
    e += (v - s * q) ** 2;
  }
  return e;
}

let power = 0;
let search = 0;
let bestSymmetric = 0;
let bestAsymmetric = 0;
for (let g = 0; g < GROUPS; g++) {
  let amax = 0;
  let min = 0;
  let max = 0;
  for (let i = 0; i < G; i++) {
    const v = normal();
    w[i] = v;
    power += v * v;
    amax = Math.max(amax, Math.abs(v));
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  search += Math.min(...[7, 7.5, 8, 8.5, 9].map((d) => squaredError(amax / d, 8, 0, 15)));
  let sym = Infinity;
  for (let i = 0; i <= STEPS; i++) sym = Math.min(sym, squaredError(amax / (4 + (10 * i) / STEPS), 8, 0, 15));
  bestSymmetric += sym;
  let asym = Infinity;
  for (let i = 0; i <= STEPS; i++) {
    const s = (max - min) / (8 + (12 * i) / STEPS);
    for (let z = 0; z <= 15; z++) asym = Math.min(asym, squaredError(s, z, 0, 15));
  }
  bestAsymmetric += asym;
}

const pct = (e) => `${((100 * Math.sqrt(e / power)).toFixed(2))}%`;
console.log(`int4, groups of ${G}, ${GROUPS} groups of N(0, 1) weights: relative RMS error`);
const rows = [
  ["mlpkit's search (symmetric, 5 candidates)", search],
  [`best symmetric scale per group (${STEPS + 1} tried)`, bestSymmetric],
  ['best scale and zero point per group', bestAsymmetric],
];
for (const [what, e] of rows) console.log(`  ${what.padEnd(46)} ${pct(e)}`);
