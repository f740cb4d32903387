// An install without a loadable addon (no toolchain, --ignore-scripts): models run on the
// reference backend with one warning per process, on one line, that says how to build the addon;
// info() reports the fallback itself and does not warn. Runs in a fresh Node whose
// MLPKIT_ADDON_PATH names a file that does not exist.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DIST, requireDist } from './child-support.js';

describe('reference fallback without the addon', () => {
  it('warns once, on one line, when the first model falls back; info() does not warn', () => {
    requireDist();
    const code = `import { info, Mlp } from ${JSON.stringify(DIST.href)};
const warnings = [];
process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
const i = info();
await new Promise((r) => setImmediate(r));
const afterInfo = warnings.length;
new Mlp({ inputs: 2, layers: [{ units: 1 }] });
new Mlp({ inputs: 2, layers: [{ units: 1 }] });
await new Promise((r) => setImmediate(r));
console.log(JSON.stringify({ backend: i.backend, nativeError: i.native.error, afterInfo, warnings }));`;
    const env: NodeJS.ProcessEnv = { ...process.env, MLPKIT_ADDON_PATH: '/nonexistent/mlpkit.node' };
    delete env.MLPKIT_BACKEND;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.backend).toBe('reference');
    expect(out.nativeError).toMatch(/nonexistent/);
    expect(out.afterInfo).toBe(0);
    expect(out.warnings).toHaveLength(1);
    expect(out.warnings[0].code).toBe('MLPKIT_REFERENCE_FALLBACK');
    expect(out.warnings[0].message).not.toMatch(/\n/);
    expect(out.warnings[0].message).toMatch(/npm rebuild mlpkit/);
  });
});
