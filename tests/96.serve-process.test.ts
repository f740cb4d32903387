// `mlpkit serve` and its processes: the server runs in the command's own process with V8's
// allocation-site pretenuring turned off (lib/server/v8-pretenuring.ts says why); --workers N
// forks N workers, restarts one that dies on the same port, and SIGINT / SIGTERM to the whole
// process group (a terminal's Ctrl-C, systemd) stops them gracefully, once.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { pickFreePort, withPort } from '../lib/cli/commands/serve.js';
import { pretenuringChosen } from '../lib/server/v8-pretenuring.js';
import { backendsUnderTest } from './helpers.js';
import { until } from './server-support.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const net = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 2 }], seed: 3 }, { backend });
const dir = mkdtempSync(join(tmpdir(), 'mlpkit-serve-process-'));
const modelPath = join(dir, 'demo.safetensors');
net.saveSync(modelPath);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The tests find the workers through /proc/PID/task/PID/children (Linux, CONFIG_PROC_CHILDREN).
const hasProc = existsSync(`/proc/self/task/${process.pid}/children`);

/** Child pids of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) if (task) out.push(Number(task));
  return out;
}

interface Served {
  child: ChildProcess;
  url: string;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface ServeOptions {
  detached?: boolean;
  port?: number;
  workers?: number;
  nodeFlags?: string[];
  model?: string;
  serveFlags?: string[];
}

async function serve(options: ServeOptions = {}): Promise<Served> {
  const workers = options.workers ?? 1;
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), 'dist/cli/main.js', 'serve', `demo=${options.model ?? modelPath}`, '--port', String(options.port ?? 0),
    '--backend', backend, '--threads', '1', '--workers', String(workers), ...(options.serveFlags ?? [])], { stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  // 'close', not 'exit': by then everything the command wrote to stderr has been read.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const listening = /listening on (http:[^\s;]+)/;
  await until('the server to listen', () => listening.test(out) || child.exitCode !== null);
  const url = listening.exec(out)?.[1];
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

describe('serve helpers', () => {
  it('leaves the pretenuring flag alone when node was started with it, on or off, in either spelling', () => {
    expect(pretenuringChosen([])).toBe(false);
    expect(pretenuringChosen(['--max-semi-space-size=32', '--trace-gc'])).toBe(false);
    expect(pretenuringChosen(['--allocation-site-pretenuring'])).toBe(true);
    expect(pretenuringChosen(['--no-allocation-site-pretenuring'])).toBe(true);
    expect(pretenuringChosen(['--no_allocation_site_pretenuring'])).toBe(true);
  });

  it('gives the workers the port picked for --port 0 where parseArgs reads it last, before a --', () => {
    expect(withPort(['m.safetensors', '--port', '0'], 4321)).toEqual(['m.safetensors', '--port', '0', '--port', '4321']);
    expect(withPort(['-p', '0', '--', '--odd-name.safetensors'], 80)).toEqual(['-p', '0', '--port', '80', '--', '--odd-name.safetensors']);
  });
});

describe('createServer and V8 pretenuring', () => {
  // A program that embeds the server: pretenuring decisions (printed by
  // --trace-pretenuring-statistics at scavenges) stop once createServer has run, unless it is
  // asked to keep them. The objects made after it are short-lived, as requests are.
  const program = `
    import { Mlp, createServer } from ${JSON.stringify(join(process.cwd(), 'dist', 'index.js'))};
    const net = new Mlp({ inputs: 4, layers: [{ units: 2 }], seed: 1 });
    const server = createServer({ models: { m: net }, ...(process.argv[1] === 'keep' ? { keepV8Pretenuring: true } : {}) });
    console.log('=== server created');
    const make = (i) => ({ i, list: [i, i + 1], inner: { s: 'x' + i } });
    let held = [];
    for (let i = 0; i < 400000; i++) { held.push(make(i)); if (held.length > 20000) held = []; }
    await server.close();
    net.dispose();`;
  const decisionsAfterCreate = (mode: string) => new Promise<number>((resolve, reject) => {
    execFile(process.execPath, ['--trace-pretenuring-statistics', '--max-semi-space-size=1', '--input-type=module', '-e', program, mode], (err, stdout) => {
      if (err) return reject(err);
      const after = stdout.slice(stdout.indexOf('=== server created'));
      resolve((after.match(/pretenuring:/g) ?? []).length);
    });
  });

  it('turns it off for the process by default, and keepV8Pretenuring: true leaves it on', async () => {
    expect(await decisionsAfterCreate('default')).toBe(0);
    expect(await decisionsAfterCreate('keep')).toBeGreaterThan(0);
  });
});

describe.runIf(hasProc)('mlpkit serve processes', () => {
  // --trace-pretenuring-statistics prints V8's pretenuring decisions at scavenges, and nothing
  // once the flag is off: the server's own process must print none under a burst of requests
  // (scavenges while the CLI's modules load, before the command turns it off, may print some).
  async function pretenuringLines(nodeFlags: string[]): Promise<{ lines: number; children: number[] }> {
    // Through node:http (--node-http): its per-request objects are what V8 pretenured (the
    // direct path makes fewer, and may not make the control below fail). The flag is process-wide.
    const s = await serve({ nodeFlags: ['--trace-pretenuring-statistics', '--max-semi-space-size=1', ...nodeFlags], serveFlags: ['--node-http'] });
    let children: number[];
    try {
      children = childrenOf(s.child.pid!);
      await predictsLikeTheModel(s.url);
      const body = JSON.stringify({ inputs: [[0.5, -1, 2, 0.25]] });
      for (let round = 0; round < 20; round++) {
        await Promise.all(Array.from({ length: 32 }, () => fetch(`${s.url}/v1/models/demo/predict`, { method: 'POST', body }).then((r) => r.arrayBuffer())));
      }
    } finally {
      s.child.kill('SIGTERM');
    }
    expect((await s.exited).code).toBe(0);
    expect(s.err()).toMatch(/SIGTERM: finishing the requests in flight\nmlpkit serve: stopped\n$/);
    const served = s.out().slice(s.out().indexOf('listening on'));
    return { lines: (served.match(/pretenuring:/g) ?? []).length, children };
  }

  it('serves from its own process with allocation-site pretenuring off, and stops gracefully on SIGTERM', async () => {
    const off = await pretenuringLines([]);
    expect(off.children).toEqual([]);
    expect(off.lines).toBe(0);
    // The same run with the flag chosen on: V8 reports its decisions, so the check above can fail.
    const on = await pretenuringLines(['--allocation-site-pretenuring']);
    expect(on.lines).toBeGreaterThan(0);
  });

  // Each case ends with only restarted workers alive: were they on another port, the server's
  // URL would stop answering. 'one': one worker, and once its successor listens, the other;
  // 'every': both at once; 'staggered': the other while the first one's successor starts.
  it.each([
    ['a given port', 'one', () => pickFreePort('127.0.0.1')], ['--port 0', 'one', async () => 0], ['--port 0', 'every', async () => 0],
    ['--port 0', 'staggered', async () => 0],
  ] as const)('--workers 2 restarts workers that die, on the same port (%s, %s)', async (_, killed, port) => {
    const s = await serve({ port: await port(), workers: 2 });
    const relistened = () => s.err().match(/worker \d+ listening on (http:\S+)/g) ?? [];
    try {
      const first = childrenOf(s.child.pid!);
      expect(first).toHaveLength(2);
      if (killed === 'staggered') {
        process.kill(first[0], 'SIGKILL');
        await until('a restart', () => /starting another/.test(s.err()) && childrenOf(s.child.pid!).length === 2);
        process.kill(first[1], 'SIGKILL');
        await until('the new workers to listen', () => relistened().length === 2);
      } else {
        const rounds = killed === 'one' ? [[first[0]], [first[1]]] : [first];
        for (const pids of rounds) {
          const before = relistened().length;
          for (const pid of pids) process.kill(pid, 'SIGKILL');
          await until('the new workers to listen', () => relistened().length === before + pids.length);
        }
      }
      expect(childrenOf(s.child.pid!).some((pid) => first.includes(pid))).toBe(false);
      for (const line of relistened()) expect(line).toBe(`worker ${/worker (\d+)/.exec(line)![1]} listening on ${s.url}`);
      await predictsLikeTheModel(s.url);
    } finally {
      s.child.kill('SIGTERM');
    }
    expect((await s.exited).code).toBe(1); // a worker died: the command reports it
  });

  it('--workers 2: a replacement that cannot start (its model file deleted) is retried while the other worker keeps serving', async () => {
    const copy = join(dir, 'deleted-later.safetensors');
    copyFileSync(modelPath, copy);
    const s = await serve({ workers: 2, model: copy });
    try {
      rmSync(copy);
      const [victim] = childrenOf(s.child.pid!);
      process.kill(victim, 'SIGKILL');
      await until('the failed replacement', () => /before it listened; 1 still serving, trying again in 1 s/.test(s.err()));
      expect(s.child.exitCode).toBeNull();
      await predictsLikeTheModel(s.url);
      // Before, the primary stopped the worker still serving and exited.
      await new Promise((r) => setTimeout(r, 300));
      await predictsLikeTheModel(s.url);
    } finally {
      s.child.kill('SIGTERM');
    }
    expect((await s.exited).code).toBe(1);
  });

  // A terminal's Ctrl-C, systemd's stop (KillMode=control-group) and `timeout` signal the whole
  // process group: a worker gets the signal twice, once directly and once from the primary,
  // and a second signal would cut the requests in flight.
  it.each([['SIGINT', 1], ['SIGTERM', 1], ['SIGINT', 2], ['SIGTERM', 2]] as const)('%s to the whole process group stops the server (--workers %i) once, gracefully', async (signal, workers) => {
    const s = await serve({ detached: true, workers }); // its own process group
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
      if (workers === 1) {
        expect(s.err().match(/\w+: finishing the requests in flight/g)).toEqual([`${signal}: finishing the requests in flight`]);
        expect(s.err()).toMatch(/mlpkit serve: stopped\n$/);
      } else {
        expect(s.err()).toBe(`mlpkit serve: ${signal}: stopping the workers\n`);
      }
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
