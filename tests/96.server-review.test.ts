// The inference server, found in a production review: each test failed before its fix.
// No timing assertions: requests pile up behind a gated model, and the tests wait for what
// /metrics shows.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, createServer, type ModelServer, type ServableModel, type ServerOptions } from '../lib/index.js';
import { wantsBinary } from '../lib/server/http.js';
import { Counter, Histogram, renderMetrics, sumMetricsTexts } from '../lib/server/metrics.js';
import { backendsUnderTest } from './helpers.js';
import { gatedModel, until } from './server-support.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const net = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 3 }], seed: 2 }, { backend });
const servers: ModelServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
});

async function start(options: Partial<ServerOptions> = {}): Promise<{ server: ModelServer; url: string; port: number }> {
  const server = createServer({ models: { demo: net }, ...options });
  servers.push(server);
  const { url, port } = await server.listen(0);
  return { server, url, port };
}

const metric = (server: ModelServer, series: string) => {
  const line = server.metricsText().split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

/** Raw chunks on one socket, `gapMs` apart: everything the server sent until it closed or `timeoutMs` passed. */
function rawRequest(port: number, chunks: (string | Buffer)[], timeoutMs = 5000, gapMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d.toString()));
    socket.on('close', () => resolve(got));
    socket.on('error', () => resolve(got));
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    setTimeout(() => socket.destroy(), timeoutMs).unref();
  });
}

const ROW = '{"inputs":[[1,2,3,4]]}';
const post = (body: string, extra = '') =>
  `POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('an over-limit body: the client gets its 413', () => {
  it('a declared Content-Length over the limit, sent whole: 413, not EPIPE / ECONNRESET, and the connection stays usable', async () => {
    const { url } = await start({ maxBodyBytes: 1000 });
    // Before, the server closed the connection at once; the client, still sending 32 MB, got a
    // reset (fetch: EPIPE) instead of the answer. The client is another process: in this one
    // its writes and the server's reads take turns on one event loop, and the race rarely shows.
    const client = `for (let i = 0; i < 3; i++) {
      try {
        const r = await fetch(process.argv[1], { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(32 << 20) });
        console.log(r.status, JSON.parse(await r.text()).error.code);
      } catch (e) { console.log('failed', e.cause?.code ?? e.message); }
    }`;
    const out = await new Promise<string>((resolve, reject) => execFile(process.execPath, ['--input-type=module', '-e', client, `${url}/v1/models/demo/predict`],
      { timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
    expect(out.trim().split('\n')).toEqual(new Array(3).fill('413 payload_too_large'));
    const ok = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ROW });
    expect(ok.status).toBe(200);
  });

  it('an over-limit chunked body: 413, then the next request on the same connection is answered', async () => {
    const { port } = await start({ maxBodyBytes: 1000 });
    const chunk = '1,'.repeat(400);
    const got = await rawRequest(port, [
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
      ...[0, 1, 2].map(() => `${chunk.length.toString(16)}\r\n${chunk}\r\n`),
      '0\r\n\r\n',
      post(ROW, 'Connection: close\r\n'),
    ]);
    expect(got).toMatch(/^HTTP\/1.1 413 /);
    expect(got).toMatch(/HTTP\/1.1 200 OK[^]*"outputs"/);
  });

  it('a refused body that keeps coming is cut at requestTimeoutMs, with no second answer and counted once', async () => {
    const { server, port } = await start({ maxBodyBytes: 1000, headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const trickle = Array.from({ length: 40 }, () => 'x'.repeat(100));
    const got = await rawRequest(port, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n', ...trickle], 5000, 50);
    expect(got).toMatch(/^HTTP\/1.1 413 /);
    expect(got.match(/HTTP\/1.1/g)).toHaveLength(1);
    await until('the 413 counted', () => metric(server, 'mlpkit_requests_total{model="demo",status="413"}') === 1);
    expect(server.metricsText()).not.toMatch(/status="408"/);
  });

  it('an over-limit body refused during shutdown: 413 with Connection: close, and the connection ends only after the body', async () => {
    const { server, port } = await start({ maxBodyBytes: 1000 });
    // The request line arrives before close() (the connection is busy, not idle, so it is
    // kept), the headers and a 32 MB body after. Before, the draining server's 413 carried
    // Connection: close and node destroyed the socket as soon as it was written: the client,
    // still sending, got EPIPE / ECONNRESET. Another process, as in the first test above.
    const client = `const { connect } = await import('node:net');
      const size = 32 << 20;
      const s = connect(Number(process.argv[1]), '127.0.0.1');
      let got = '', error = null;
      s.on('data', (d) => (got += d));
      s.on('error', (e) => (error = e.code));
      s.on('close', () => console.log(JSON.stringify({ status: got.slice(0, 12), close: /connection: close/i.test(got), error })));
      s.on('connect', () => s.write('POST /v1/models/demo/predict HTTP/1.1\\r\\nHost: x\\r\\n', () => console.log('ready')));
      process.stdin.once('data', () => {
        s.write('Content-Type: application/octet-stream\\r\\nContent-Length: ' + size + '\\r\\n\\r\\n');
        s.end(Buffer.alloc(size));
        process.stdin.destroy();
      });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', client, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await until('the request line sent', () => out.includes('ready'));
    await new Promise((r) => setTimeout(r, 300)); // loopback: the server has read it by then
    const closing = server.close({ graceMs: 30_000 });
    child.stdin.write('go\n');
    await new Promise((r) => child.on('exit', r));
    expect(JSON.parse(out.slice(out.indexOf('{')))).toEqual({ status: 'HTTP/1.1 413', close: true, error: null });
    await closing;
  });

  it('Expect: 100-continue with an over-limit length still closes the connection (its body was never invited)', async () => {
    const { port } = await start({ maxBodyBytes: 1000 });
    const got = await rawRequest(port, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n'], 3000);
    expect(got).toMatch(/^HTTP\/1.1 413 [^]*Connection: close/);
  });
});

describe('a client that leaves while its request is queued', () => {
  it('gives its queue slot back at once: live requests are not refused and the model does not compute its rows', async () => {
    const model = gatedModel(net);
    const { server, url, port } = await start({ models: { demo: model }, inlineMacs: 0, maxQueueRows: 4 });
    const sockets: Socket[] = [];
    const open = (): Socket => {
      const s = connect(port, '127.0.0.1', () => s.write(post(ROW)));
      s.on('error', () => {});
      sockets.push(s);
      return s;
    };
    open();
    await until('the first call', () => model.calls.length === 1);
    for (let i = 0; i < 4; i++) open();
    await until('a full queue', () => metric(server, 'mlpkit_queue_depth{model="demo"}') === 4);
    for (const s of sockets.slice(1)) s.destroy();
    // Before, the 4 dead requests kept the queue full (depth 4, the next request refused with
    // 503) and were computed in the next predict call.
    await until('the queue emptied', () => metric(server, 'mlpkit_queue_depth{model="demo"}') === 0);
    await until('the aborts counted', () => metric(server, 'mlpkit_requests_total{model="demo",status="aborted"}') === 4);
    const live = fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body: ROW });
    await until('the live request queued', () => metric(server, 'mlpkit_queue_depth{model="demo"}') === 1);
    model.release();
    const res = await live;
    expect(res.status).toBe(200);
    expect(Float32Array.from(((await res.json()) as { outputs: number[][] }).outputs.flat())).toEqual(net.predict(new Float32Array([1, 2, 3, 4])));
    expect(model.calls).toEqual([1, 1]);
    sockets[0].destroy();
  });

  it('cancelled requests between live ones: each live one gets its own rows, the queue accounting stays exact', async () => {
    const model = gatedModel(net);
    const { server, url, port } = await start({ models: { demo: model }, inlineMacs: 0, maxQueueRows: 64 });
    const first = fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body: ROW });
    await until('the first call', () => model.calls.length === 1);
    const live: Promise<Response>[] = [];
    const dead: Socket[] = [];
    for (let i = 0; i < 6; i++) {
      const body = JSON.stringify({ inputs: [[i, 2, 3, 4]] });
      if (i % 2 === 0) {
        const s = connect(port, '127.0.0.1', () => s.write(post(body)));
        s.on('error', () => {});
        dead.push(s);
      } else {
        live.push(fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body }));
      }
      await until(`request ${i} queued`, () => metric(server, 'mlpkit_queue_depth{model="demo"}') === i + 1);
    }
    for (const s of dead) s.destroy();
    await until('3 left queued', () => metric(server, 'mlpkit_queue_depth{model="demo"}') === 3);
    model.release();
    expect((await first).status).toBe(200);
    for (const [k, p] of live.entries()) {
      const i = 2 * k + 1;
      const res = await p;
      expect(res.status).toBe(200);
      expect(Float32Array.from(((await res.json()) as { outputs: number[][] }).outputs.flat())).toEqual(net.predict(new Float32Array([i, 2, 3, 4])));
    }
    expect(model.calls).toEqual([1, 3]);
    expect(metric(server, 'mlpkit_queue_depth{model="demo"}')).toBe(0);
  });
});

describe('HTTP details', () => {
  it('Accept is read as a media-type list: any case, and q=0 refuses', async () => {
    expect(wantsBinary('application/octet-stream')).toBe(true);
    expect(wantsBinary('Application/Octet-Stream')).toBe(true);
    expect(wantsBinary('application/json, application/octet-stream;q=0')).toBe(false);
    expect(wantsBinary('application/json;q=0.5, application/octet-stream;q=0.9')).toBe(true);
    expect(wantsBinary('application/json, application/octet-stream;q=0.5')).toBe(false);
    expect(wantsBinary('*/*')).toBe(false);
    expect(wantsBinary(undefined)).toBe(false);
    const { url } = await start();
    const x = new Float32Array([1, 2, 3, 4]);
    const ask = (accept: string) => fetch(`${url}/v1/models/demo/predict`, {
      method: 'POST', headers: { 'content-type': 'application/octet-stream', accept }, body: Buffer.from(x.buffer),
    });
    // Before: JSON text for the first (a client reading floats got garbage), bytes for the second.
    const upper = await ask('Application/Octet-Stream');
    expect(upper.headers.get('content-type')).toBe('application/octet-stream');
    expect(new Float32Array(await upper.arrayBuffer())).toEqual(net.predict(x));
    const refused = await ask('application/json, application/octet-stream;q=0');
    expect(refused.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('a request target in absolute form (as proxies send it) is served', async () => {
    const { port } = await start();
    const got = await rawRequest(port, [`POST http://example.test:8080/v1/models/demo/predict?x=1 HTTP/1.1\r\nHost: example.test\r\nContent-Length: ${ROW.length}\r\nConnection: close\r\n\r\n${ROW}`]);
    expect(got).toMatch(/^HTTP\/1.1 200 OK[^]*"outputs"/);
    const health = await rawRequest(port, ['GET http://example.test/healthz HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n']);
    expect(health).toMatch(/^HTTP\/1.1 200 OK/);
  });

  it('an Expect other than 100-continue gets a JSON 417 and the connection closes (its body is not read as the next request)', async () => {
    const { server, port } = await start();
    const got = await rawRequest(port, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\nExpect: something-else\r\n\r\n'], 3000);
    expect(got).toMatch(/^HTTP\/1.1 417 [^]*Connection: close[^]*"code":"expectation_failed"/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="417"\} 1\n/);
  });
});

describe('a client that stops reading its response', () => {
  // 1000 rows of 4096 float32 outputs: 16 MB, more than loopback's socket buffers take, so
  // part of the response waits in the server for a client that never reads it.
  const wide = new Mlp({ inputs: 1, layers: [{ units: 4096 }], seed: 3 }, { backend });
  const rows = 1000;
  const full = rows * 4096 * 4;
  const request = (port: number, onHeadersSent: (socket: Socket) => void) => {
    const socket = connect(port, '127.0.0.1');
    const body = Buffer.from(new Float32Array(rows).fill(0.5).buffer);
    socket.on('connect', () => {
      socket.write(`POST /v1/models/wide/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nAccept: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
      socket.write(body);
      onHeadersSent(socket);
    });
    return socket;
  };
  /** Pauses reading for `pauseMs`, then reads to the end: the bytes received and whether the server closed. */
  const readAfter = (port: number, pauseMs: number) => new Promise<{ bytes: number; closed: boolean }>((resolve) => {
    let bytes = 0;
    const socket = request(port, (s) => {
      s.pause();
      setTimeout(() => s.resume(), pauseMs);
    });
    socket.on('data', (d) => {
      bytes += d.length;
      // The whole response in, and the connection still open (keep-alive): done.
      if (bytes > full) setTimeout(() => { socket.destroy(); resolve({ bytes, closed: false }); }, 200);
    });
    socket.on('close', () => resolve({ bytes, closed: true }));
    socket.on('error', () => {});
  });

  it('is disconnected after writeTimeoutMs of no progress, and the server keeps serving', async () => {
    const server = createServer({ models: { wide }, writeTimeoutMs: 200 });
    servers.push(server);
    const { port, url } = await server.listen(0);
    const stalled = await readAfter(port, 1500);
    expect(stalled.closed).toBe(true);
    expect(stalled.bytes).toBeLessThan(full);
    const res = await fetch(`${url}/v1/models/wide/predict`, { method: 'POST', body: '{"inputs":[[1]]}' });
    expect(res.status).toBe(200);
    expect((await res.json()).outputs[0]).toHaveLength(4096);
  });

  it('a reader that only pauses for less than writeTimeoutMs gets the whole response on a kept connection', async () => {
    const server = createServer({ models: { wide }, writeTimeoutMs: 5000 });
    servers.push(server);
    const { port } = await server.listen(0);
    const slow = await readAfter(port, 300);
    expect(slow.closed).toBe(false);
    expect(slow.bytes).toBeGreaterThan(full);
  });

  it('writeTimeoutMs is checked like the other timeouts', () => {
    expect(() => createServer({ models: { wide }, writeTimeoutMs: 0 })).toThrow(RangeError);
    expect(() => createServer({ models: { wide }, writeTimeoutMs: '5' as unknown as number })).toThrow(TypeError);
  });
});

describe('mlpkit serve --workers: /metrics', () => {
  it('sums the workers\' metrics texts sample by sample', () => {
    const text = (n: number) => {
      const c = new Counter('c_total', 'help');
      const h = new Histogram('h', 'help', [1, 2]);
      c.inc({ model: 'a' }, n);
      if (n > 1) c.inc({ model: 'b' });
      h.observe({ model: 'a' }, n);
      return renderMetrics([c, h]);
    };
    expect(sumMetricsTexts([text(1), text(2)])).toBe([
      '# HELP c_total help', '# TYPE c_total counter', 'c_total{model="a"} 3', 'c_total{model="b"} 1',
      '# HELP h help', '# TYPE h histogram', 'h_bucket{model="a",le="1"} 1', 'h_bucket{model="a",le="2"} 2',
      'h_bucket{model="a",le="+Inf"} 2', 'h_sum{model="a"} 3', 'h_count{model="a"} 2', '',
    ].join('\n'));
  });

  it('any worker answers for all of them (before, each scrape saw one worker\'s counts)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlpkit-serve-'));
    const child = { proc: null as ReturnType<typeof spawn> | null };
    try {
      await net.save(join(dir, 'demo.safetensors'));
      const proc = spawn(process.execPath, ['dist/cli/main.js', 'serve', join(dir, 'demo.safetensors'), '--port', '0', '--backend', backend,
        '--workers', '2', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.proc = proc;
      let out = '';
      let err = '';
      proc.stdout!.on('data', (d) => (out += d));
      proc.stderr!.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
      await until('the workers to listen', () => /listening on (http:\S+)/.test(out) || proc.exitCode !== null);
      const url = /listening on (http:\S+)/.exec(out)?.[1];
      expect(url, err).toBeDefined();
      // New connections each: the primary hands them to the workers in turn.
      for (let i = 0; i < 8; i++) {
        const res = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body: ROW, headers: { connection: 'close' } });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
      for (let i = 0; i < 4; i++) {
        const text = await (await fetch(`${url}/metrics`, { headers: { connection: 'close' } })).text();
        expect(text).toContain('mlpkit_requests_total{model="demo",status="200"} 8\n');
        expect(text).toContain('mlpkit_request_duration_seconds_count{model="demo"} 8\n');
        expect(text).toContain('# TYPE mlpkit_queue_depth gauge\nmlpkit_queue_depth{model="demo"} 0\n');
      }
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.proc && child.proc.exitCode === null) child.proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
