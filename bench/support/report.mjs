// Turns measured cells into the markdown the peer bench prints and saves, the issue #3 target
// checks, and the panels of the SVG chart. Cells are keyed `${op}:${batch}:${backend}` and hold
// { us } (median microseconds per call) or { skip } (why there is no number).

import { groupedBarChartSvg } from './bar-chart.mjs';

export const cellKey = (op, batch, backend) => `${op}:${batch}:${backend}`;

export function formatTime(us) {
  if (us < 10) return `${us.toFixed(2)} us`;
  if (us < 1000) return `${us.toFixed(1)} us`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

export function formatRate(perSecond) {
  const units = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, suffix] of units) if (perSecond >= scale) return `${(perSecond / scale).toPrecision(3)}${suffix}`;
  return perSecond.toPrecision(3);
}

const formatRatio = (r) => `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;

function timeOf(shape, op, batch, backend) {
  const cell = shape.cells.get(cellKey(op, batch, backend));
  return cell && Number.isFinite(cell.us) ? cell.us : undefined;
}

/** The markdown table of one shape: one row per (op, batch, backend). */
export function shapeTable(shape, adapters) {
  const lines = [
    `### ${shape.key}: MLP ${shape.title}`,
    '',
    '| op | batch | backend | time per call | samples/s | mlpkit vs peer |',
    '|---|---:|---|---:|---:|---:|',
  ];
  for (const op of shape.ops) {
    for (const batch of op.batches) {
      const base = timeOf(shape, op.key, batch, 'native');
      for (const a of adapters) {
        const cell = shape.cells.get(cellKey(op.key, batch, a.key));
        if (!cell) continue; // not a row of this op (predictAsync under train)
        if (cell.skip !== undefined) {
          lines.push(`| ${op.label} | ${batch} | ${a.label} | - | - | - |`);
          continue;
        }
        const ratio = a.key === 'native' ? 'baseline' : base === undefined ? '-' : formatRatio(cell.us / base);
        lines.push(
          `| ${op.label} | ${batch} | ${a.label} | ${formatTime(cell.us)} | ${formatRate((batch / cell.us) * 1e6)} | ${ratio} |`,
        );
      }
    }
  }
  const skips = [...new Set([...shape.cells.values()].filter((c) => c.skip).map((c) => c.skip))];
  if (skips.length) lines.push('', `'-': ${skips.join('; ')}.`);
  return lines.join('\n');
}

/** How many times the peer's time per call exceeds mlpkit native's (undefined if either is missing). */
function speedup(shapes, shapeKey, op, batch, peer) {
  const shape = shapes.find((s) => s.key === shapeKey);
  if (!shape) return undefined;
  const mine = timeOf(shape, op, batch, 'native');
  const theirs = timeOf(shape, op, batch, peer);
  return mine === undefined || theirs === undefined ? undefined : theirs / mine;
}

/** The issue #3 targets: [{ shape, what, target, measured, result: 'PASS' | 'FAIL' | 'N/A' }]. */
export function evaluateTargets(shapes) {
  const ratioTarget = (shape, what, target, op, batch, peer, min) => {
    const r = speedup(shapes, shape, op, batch, peer);
    return {
      shape, what, target,
      measured: r === undefined ? 'not measured' : formatRatio(r),
      result: r === undefined ? 'N/A' : r >= min ? 'PASS' : 'FAIL',
    };
  };
  const trainA = (() => {
    const vsTfjs = speedup(shapes, 'A', 'train', 16384, 'tfjs');
    const shapeA = shapes.find((s) => s.key === 'A');
    const step = shapeA && timeOf(shapeA, 'train', 16384, 'native');
    const predict = shapeA && timeOf(shapeA, 'predict', 16384, 'native');
    const stepOverPredict = step !== undefined && predict !== undefined ? step / predict : undefined;
    const measured = [
      `${vsTfjs === undefined ? 'not measured' : formatRatio(vsTfjs)} vs tfjs-wasm`,
      `step/predict ${stepOverPredict === undefined ? 'not measured' : stepOverPredict.toFixed(2)}`,
    ].join('; ');
    const known = vsTfjs !== undefined && stepOverPredict !== undefined;
    return {
      shape: 'A',
      what: 'train step Adam MSE batch 16384',
      target: '>= 10x faster than tfjs-wasm, and mlpkit step time <= 3.5x mlpkit predict time at that batch',
      measured,
      result: !known ? 'N/A' : vsTfjs >= 10 && stepOverPredict <= 3.5 ? 'PASS' : 'FAIL',
    };
  })();
  return [
    ratioTarget('A', 'sync predict batch 1', 'mlpkit >= 15x faster than onnxruntime-node session.run', 'predict', 1, 'ort', 15),
    ratioTarget('A', 'predict batch 16384', 'mlpkit throughput >= 1.5x onnxruntime-node', 'predict', 16384, 'ort', 1.5),
    trainA,
    ratioTarget('B', 'train step Adam softmax-CE batch 128', '>= 15x faster than tfjs-wasm', 'train', 128, 'tfjs', 15),
    ratioTarget('C', 'predict batch 4096', '>= 1.2x onnxruntime-node throughput', 'predict', 4096, 'ort', 1.2),
  ];
}

export function targetsTable(targets) {
  return [
    '| shape | what | target | measured | result |',
    '|---|---|---|---|---|',
    ...targets.map((t) => `| ${t.shape} | ${t.what} | ${t.target} | ${t.measured} | ${t.result} |`),
  ].join('\n');
}

const COLORS = { native: '#08519c', async: '#6baed6', ort: '#d94801', tfjs: '#238b45', reference: '#969696' };

/** SVG: per shape, samples/s of every backend, one panel per op (shape A) or per shape. */
export function resultsSvg(shapes, adapters, subtitle) {
  const series = adapters.map((a) => ({ label: a.label, color: COLORS[a.key] ?? '#333' }));
  // undefined: not a row of this op (no bar, no mark); null: a row without a number ("n/a").
  const value = (shape, op, batch, key) => {
    if (!shape.cells.has(cellKey(op, batch, key))) return undefined;
    const us = timeOf(shape, op, batch, key);
    return us === undefined ? null : (batch / us) * 1e6;
  };
  const groupsOf = (shape, ops, withOpName) =>
    ops.flatMap((op) =>
      op.batches.map((batch) => ({
        label: withOpName ? `${op.short} ${batch}` : `${batch}`,
        values: adapters.map((a) => value(shape, op.key, batch, a.key)),
      })),
    );
  const panels = [];
  for (const shape of shapes) {
    if (shape.key === 'A') {
      // Shape A has four batch sizes per op: one panel each, batch on the x axis.
      for (const op of shape.ops) {
        panels.push({ title: `A ${shape.title}: ${op.label}`, xLabel: 'batch size', groups: groupsOf(shape, [op], false) });
      }
    } else {
      panels.push({ title: `${shape.key} ${shape.title}`, xLabel: 'op and batch size', groups: groupsOf(shape, shape.ops, true) });
    }
  }
  return groupedBarChartSvg({
    title: 'mlpkit vs onnxruntime-node and tfjs-wasm: samples per second (log scale, higher is better)',
    subtitle,
    yLabel: 'samples/s',
    series,
    panels,
  });
}
