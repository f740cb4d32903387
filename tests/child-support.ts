// Child processes and paths for the tests that need a fresh Node (leak soaks, finalizers, worker
// threads): they run the compiled package, dist/, which `npm ci` (prepare) and `npx tsc` build.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DIST = new URL('../dist/index.js', import.meta.url);
export const DIST_NATIVE = new URL('../dist/backend/native.js', import.meta.url);
export function requireDist(): void {
  if (!existsSync(fileURLToPath(DIST))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` (npm ci does) before these tests');
}

/** Runs an ES module body in a fresh `node --expose-gc`; resolves with what it printed as JSON. */
export function child(body: string, timeoutMs = 25_000): Promise<Record<string, unknown>> {
  requireDist();
  const code = `import * as mlpkit from ${JSON.stringify(DIST.href)};\nimport { loadNative } from ${JSON.stringify(DIST_NATIVE.href)};\n` +
    `const gc = globalThis.gc; const tick = () => new Promise((r) => setImmediate(r));\n` +
    `const settle = async () => { for (let i = 0; i < 8; i++) { gc(); await tick(); } };\n` +
    // Resident memory outside V8's heap (native allocations, array buffers, code), and the live
    // JS heap: V8 grows its heap reservation (heapTotal) in 16 MB steps at moments of its own
    // choosing, which moves RSS without any leak.
    `const rss = () => { const m = process.memoryUsage(); return m.rss - m.heapTotal; };\n` +
    `const heap = () => process.memoryUsage().heapUsed;\n` +
    `const out = {};\n${body}\nconsole.log(JSON.stringify(out));`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`child exited with ${code ?? signal}: ${stderr.slice(-2000)}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`child printed no JSON: ${stdout.slice(-500)} ${stderr.slice(-500)}`));
      }
    });
  });
}

export const MB = 1024 * 1024;
