// `mlpkit serve` and its processes: by default the server runs in one cluster worker started
// with a 64 MiB V8 semi-space (lib/cli/young-generation.ts says why); a user who set the size
// gets one process; the worker is restarted if it dies, and SIGINT to the whole process group
// (a terminal's Ctrl-C) stops it gracefully, once.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { withPort } from '../lib/cli/commands/serve.js';
import { SERVE_SEMI_SPACE_MB, semiSpaceChosen, serveExecArgv } from '../lib/cli/young-generation.js';
import { backendsUnderTest } from './helpers.js';
import { until } from './server-support.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const net = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 2 }], seed: 3 }, { backend });
const dir = mkdtempSync(join(tmpdir(), 'mlpkit-serve-process-'));
const modelPath = join(dir, 'demo.safetensors');
net.saveSync(modelPath);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The tests find the worker through /proc/PID/task/PID/children (Linux, CONFIG_PROC_CHILDREN).
const hasProc = existsSync(`/proc/self/task/${process.pid}/children`);

/** Child pids of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) if (task) out.push(Number(task));
  return out;
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

interface Served {
  child: ChildProcess;
  url: string;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A port free a moment ago (a worker restarted under --port 0 would get a new random port). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function serve(env: NodeJS.ProcessEnv = process.env, options: { detached?: boolean; port?: number } = {}): Promise<Served> {
  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', `demo=${modelPath}`, '--port', String(options.port ?? 0), '--backend', backend, '--threads', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'], env, detached: options.detached });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  // 'close', not 'exit': by then everything the command wrote to stderr has been read.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  await until('the server to listen', () => /listening on (http:\S+);/.test(out) || child.exitCode !== null);
  const url = /listening on (http:\S+);/.exec(out)?.[1];
  expect(url, err).toBeDefined();
  return { child, url: url!, out: () => out, err: () => err, exited };
}

async function predictsLikeTheModel(url: string): Promise<void> {
  const x = [0.5, -1, 2, 0.25];
  const res = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body: JSON.stringify({ inputs: [x] }) });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { outputs: number[][] };
  expect(Float32Array.from(body.outputs[0])).toEqual(net.predict(new Float32Array(x)));
}

describe('young-generation flags', () => {
  it('adds the semi-space size unless the user gave one, in either spelling or in NODE_OPTIONS', () => {
    expect(semiSpaceChosen([], '')).toBe(false);
    expect(semiSpaceChosen(['--max-semi-space-size=32'], '')).toBe(true);
    expect(semiSpaceChosen(['--max_semi_space_size', '32'], '')).toBe(true);
    expect(semiSpaceChosen([], '--trace-gc --max-semi-space-size=8')).toBe(true);
    expect(semiSpaceChosen(['--max-old-space-size=4096'], '--max-old-space-size=1')).toBe(false);
    expect(serveExecArgv(['--trace-gc'], '')).toEqual(['--trace-gc', `--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`]);
    expect(serveExecArgv(['--max-semi-space-size=16'], '')).toEqual(['--max-semi-space-size=16']);
    expect(serveExecArgv([], '--max-semi-space-size=16')).toEqual([]);
  });

  it('gives a restarted worker the first one\'s port where parseArgs reads it last, before a --', () => {
    expect(withPort(['serve', 'm.safetensors', '--port', '0'], 4321)).toEqual(['serve', 'm.safetensors', '--port', '0', '--port', '4321']);
    expect(withPort(['serve', '-p', '0', '--', '--odd-name.safetensors'], 80)).toEqual(['serve', '-p', '0', '--port', '80', '--', '--odd-name.safetensors']);
  });
});

describe.runIf(hasProc)('mlpkit serve processes', () => {
  it('serves from one worker started with the larger semi-space, and stops gracefully on SIGTERM', async () => {
    const s = await serve();
    try {
      const workers = childrenOf(s.child.pid!);
      expect(workers).toHaveLength(1);
      expect(cmdline(workers[0])).toContain(`--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`);
      expect(cmdline(s.child.pid!)).not.toContain(`--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`);
      await predictsLikeTheModel(s.url);
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(s.err()).toMatch(/SIGTERM: finishing the requests in flight\nmlpkit serve: stopped\n$/);
  });

  it('runs in one process when the user chose a semi-space size', async () => {
    const s = await serve({ ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-semi-space-size=32`.trim() });
    try {
      expect(childrenOf(s.child.pid!)).toEqual([]);
      await predictsLikeTheModel(s.url);
    } finally {
      s.child.kill('SIGTERM');
    }
    expect((await s.exited).code).toBe(0);
    expect(s.err()).toMatch(/SIGTERM: finishing the requests in flight\nmlpkit serve: stopped\n$/);
  });

  it.each([['a given port', freePort], ['--port 0', async () => 0]])('restarts a worker that dies, on the same port (%s)', async (_, port) => {
    const s = await serve(process.env, { port: await port() });
    try {
      const [first] = childrenOf(s.child.pid!);
      process.kill(first, 'SIGKILL');
      await until('another worker', () => /exited \(SIGKILL\); starting another/.test(s.err()) && childrenOf(s.child.pid!).some((p) => p !== first));
      // The new worker listens a moment after it starts: retry until it answers.
      await until('the new worker to answer', async () => {
        try {
          await predictsLikeTheModel(s.url);
          return true;
        } catch {
          return false;
        }
      });
    } finally {
      s.child.kill('SIGTERM');
    }
    expect((await s.exited).code).toBe(1); // a worker died: the command reports it
  });

  // A terminal's Ctrl-C, systemd's stop (KillMode=control-group) and `timeout` signal the whole
  // process group: the worker gets the signal twice, once directly and once from the primary,
  // and a second signal would cut the requests in flight.
  it.each(['SIGINT', 'SIGTERM'] as const)('%s to the whole process group stops the server once, gracefully', async (signal) => {
    const s = await serve(process.env, { detached: true }); // its own process group
    try {
      await predictsLikeTheModel(s.url);
      // A request in flight: headers and the first bytes of its body sent, the rest after the stop.
      const x = [0.5, -1, 2, 0.25];
      const body = JSON.stringify({ inputs: [x] });
      const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
      let answer = '';
      socket.on('data', (d) => (answer += d));
      const closed = new Promise((resolve) => socket.on('close', resolve));
      socket.write(`POST /v1/models/demo/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
      await until('the server to read the first bytes', async () => /mlpkit_buffered_body_bytes 5\b/.test(await (await fetch(`${s.url}/metrics`)).text()));
      process.kill(-s.child.pid!, signal);
      // Both copies of the signal have reached the worker long before this (the second one, taken
      // as a second stop, used to close every connection, this one too).
      await new Promise((r) => setTimeout(r, 300));
      socket.end(body.slice(5));
      await closed;
      expect(answer).toMatch(/^HTTP\/1.1 200 /);
      expect(Float32Array.from(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).outputs[0])).toEqual(net.predict(new Float32Array(x)));
      expect(await s.exited).toEqual({ code: 0, signal: null });
      expect(s.err().match(/\w+: finishing the requests in flight/g)).toEqual([`${signal}: finishing the requests in flight`]);
      expect(s.err()).toMatch(/mlpkit serve: stopped\n$/);
    } finally {
      try {
        process.kill(-s.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it('a server that cannot start says why once and exits 1', async () => {
    const bad = join(dir, 'bad.safetensors');
    writeFileSync(bad, 'not a safetensors file');
    const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', bad, '--port', '0', '--backend', backend], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(err.match(/mlpkit serve: /g), err).toHaveLength(1);
    expect(err).toMatch(/bad\.safetensors/);
  });
});
