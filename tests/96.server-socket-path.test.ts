// The native socket path (native/addon/socket_path.cpp, lib/server/socket-path.ts): the
// requests it answers in C++ must get the answers the TypeScript direct path gives, byte for
// byte (Date aside), and everything else must come back to that path unchanged.
//
// Its parts against the TypeScript ones they stand in for: the head parser (a strict part of
// direct-head.ts's form: it may refuse more, never accept a head the TypeScript parser reads
// differently), the JSON rows reader (values bit for bit decodeJson's), the answer encoder
// (String(v) for every float32) and the Date text. Then whole servers: one with the native path,
// one with nativeHttp off (the TypeScript direct path, itself checked against node:http in
// 96.server-direct), fed the same bytes in random splits.
//
// The served model runs on the native backend with weights and inputs that are small multiples
// of powers of two, so every product and sum is exact in float32: its rows do not depend on
// which rows share a batch or in what order a kernel adds, and the servers' answers can be
// compared byte for byte even though they batch differently.

import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mlp, createServer, type ModelServer, type ServerOptions } from '../lib/index.js';
import { loadNative } from '../lib/backend/native.js';
import { decodeJson, encodeJson } from '../lib/server/codec.js';
import { errorBody } from '../lib/server/errors.js';
import { parseHead } from '../lib/server/direct-head.js';
import { overloaded } from '../lib/server/predict.js';
import { HttpError } from '../lib/server/errors.js';
import { MODELS, head as randomHead } from './server-heads.js';
import { exchange, post, split, until, withoutDate } from './server-support.js';

const addon = loadNative();
const hasPath = typeof addon?.createSocketPath === 'function';

/** A native Mlp whose every output is exact in float32 (see above). */
function exactModel(inputs: number, hidden: number, outputs: number, seed: number): Mlp {
  const spec = { inputs, layers: [{ units: hidden, activation: 'relu' as const }, { units: outputs }] };
  const count = inputs * hidden + hidden + hidden * outputs + outputs;
  let s = seed;
  const parameters = Float32Array.from({ length: count }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return ((s >> 8) % 7 - 3) / 4;
  });
  return new Mlp(spec, { backend: 'native', parameters });
}

const TAIL = 'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n';

describe.skipIf(!hasPath)('native socket path: its parts against the TypeScript ones', () => {
  const names = [...MODELS.keys()];

  it('the head parser accepts only heads the TypeScript parser reads the same way, and all of those it should', () => {
    let accepted = 0;
    fc.assert(fc.property(randomHead, (text) => {
      const b = Buffer.from(`${text}\r\n\r\n`, 'latin1');
      const got = addon!.serveParseHead!(b, text.length, names);
      const want = parseHead(b, text.length, MODELS);
      // The TypeScript path's hot form: JSON in, JSON out, kept alive.
      const hot = want !== null && !want.binary && !want.acceptBinary && !want.close;
      if (got !== null) {
        accepted++;
        expect({ text, hot }).toEqual({ text, hot: true });
        expect({ text, got }).toEqual({ text, got: [names.indexOf(want!.served.name), want!.length] });
      } else if (hot) {
        // Refused only where an Accept mentions octet-stream (at q=0, say): the TypeScript path decides those.
        expect({ text, accept: /\r\naccept:[^\r]*octet-stream/i.test(text) }).toEqual({ text, accept: true });
      }
    }), { numRuns: 4000, seed: 11 });
    expect(accepted).toBeGreaterThan(300);
  });

  const width = 3;
  const number = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: -1e6, max: 1e6 }).map(String) },
    { weight: 3, arbitrary: fc.float({ noNaN: true, noDefaultInfinity: true }).map(String) },
    fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
    fc.float({ noNaN: true, noDefaultInfinity: true }).map((v) => v.toPrecision(9)),
    fc.float({ noNaN: true, noDefaultInfinity: true }).map((v) => v.toExponential(12).toUpperCase()),
    fc.constantFrom('0', '-0', '0.0', '1e0', '1E+2', '-1e-2', '3.4028235e38', '3.4028234663852886e38', '1e39', '1e-38', '1e-46', '1.17549435e-38',
      '01', '1.', '.5', '+1', '-', '1e', '0x10', 'NaN', 'Infinity', '1_000', '1e400', '123456789012345678901234567890'),
  );
  const blank = fc.constantFrom('', ' ', '\n', '\t', ' \r\n ');
  const value = fc.tuple(blank, number, blank).map(([a, n, b]) => `${a}${n}${b}`);
  // Mostly rows of the model's width; some shorter or longer.
  const row = fc.oneof({ weight: 5, arbitrary: fc.array(value, { minLength: width, maxLength: width }) }, { weight: 1, arbitrary: fc.array(value, { minLength: 1, maxLength: 4 }) })
    .map((xs) => `[${xs.join(',')}]`);
  const body = fc.oneof(
    { weight: 4, arbitrary: fc.tuple(blank, fc.array(row, { minLength: 1, maxLength: 3 }), blank).map(([a, rows, b]) => `${a}{"inputs":${a}[${rows.join(',')}]${b}}${b}`) },
    { weight: 2, arbitrary: fc.tuple(blank, row).map(([a, r]) => `{${a}"inputs"${a}:${r}}`) },
    { weight: 1, arbitrary: fc.constantFrom('{"inputs":[[1,2,3]],"shape":[1,3]}', '{"inputs":[]}', '{"inputs":[[]]}', '{"inputs":[[1,2,3],]}',
      '{"inputs":[[1,2,3]]', '{"inputs":[[1,2,3]]}x', '{"Inputs":[[1,2,3]]}', '\ufeff{"inputs":[[1,2,3]]}', '{"inputs":[[1,2,[3]]]}',
      '{"inputs":[["1",2,3]]}', '{"inputs":[[null,2,3]]}', '{"inputs":[1,2,3],"shape":[1,3]}') },
  );

  it('the rows reader gives decodeJson\'s rows bit for bit, or leaves the body to it', () => {
    let accepted = 0;
    fc.assert(fc.property(body, (text) => {
      const bytes = Buffer.from(text);
      const got = addon!.serveReadRows!(bytes, width);
      let want: { x: Float32Array; rows: number; flat: boolean } | HttpError;
      try {
        want = decodeJson(bytes, 'm', width);
      } catch (err) {
        want = err as HttpError;
      }
      if (got === null) {
        // Left to the TypeScript path: fine for any body, but a plain one must be read here.
        if (/^\{"inputs":\[\[-?[1-9][0-9]{0,5}(,-?[1-9][0-9]{0,5}){2}\]\]\}$/.test(text)) expect({ text, got }).not.toEqual({ text, got: null });
        return;
      }
      accepted++;
      expect({ text, error: want instanceof HttpError ? want.message : null }).toEqual({ text, error: null });
      const w = want as { x: Float32Array; rows: number; flat: boolean };
      expect({ rows: got.rows, flat: got.flat }).toEqual({ rows: w.rows, flat: w.flat });
      expect(Array.from(new Uint32Array(got.x.buffer))).toEqual(Array.from(new Uint32Array(w.x.buffer, w.x.byteOffset, w.x.length)));
    }), { numRuns: 6000, seed: 12 });
    expect(accepted).toBeGreaterThan(800);
  });

  it('the answer is the TypeScript path\'s text: String(v) for every float32, null for the non-finite', () => {
    const specials = [0, -0, NaN, Infinity, -Infinity, 1e-45, -1e-45, 3.4028234663852886e38, 1e21, 1e20, 1e-7, 1e-6, 0.1, 123456.5, 2 ** 24 + 2];
    const bits = fc.array(fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.constantFrom(...specials.map((v) => new Uint32Array(new Float32Array([v]).buffer)[0]))), { minLength: 1, maxLength: 40 });
    fc.assert(fc.property(bits, fc.integer({ min: 1, max: 4 }), fc.boolean(), (words, rows, flat) => {
      const y = new Float32Array(new Uint32Array(words.slice(0, Math.floor(words.length / rows) * rows || rows).concat(Array(rows).fill(0)).slice(0, Math.max(rows, Math.floor(words.length / rows) * rows))).buffer);
      const w = y.length / rows;
      const body = encodeJson(y, rows, w, flat);
      const want = `HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nDate: D\r\n${TAIL}${body}`;
      expect(addon!.serveAnswer!(y, rows, w, flat, 'D', TAIL)).toBe(want);
    }), { numRuns: 3000, seed: 13 });
    // And two million float32 bit patterns in one answer.
    const many = new Float32Array(2_000_000);
    const words = new Uint32Array(many.buffer);
    let s = 7;
    for (let i = 0; i < words.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      words[i] = s;
    }
    const text = addon!.serveAnswer!(many, 1, many.length, true, 'D', TAIL);
    expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe(encodeJson(many, 1, many.length, true));
  });

  it('the Date text is toUTCString\'s', () => {
    for (const seconds of [0, 951782400, 1_700_000_000, 1_796_000_000, 4_102_444_799, 2 ** 31, 253_402_300_799]) {
      expect(addon!.serveHttpDate!(seconds)).toBe(new Date(seconds * 1000).toUTCString());
    }
  });
});

// ---- whole servers ----------------------------------------------------------------------------

const servers: ModelServer[] = [];
const net = hasPath ? exactModel(4, 8, 3, 1) : null;

async function start(options: Partial<ServerOptions> = {}, models: Record<string, Mlp> = { demo: net! }): Promise<{ server: ModelServer; port: number }> {
  const server = createServer({ models, ...options });
  servers.push(server);
  const { port } = await server.listen(0);
  return { server, port };
}

/** Connections the server's native path holds now. */
const nativeHeld = (server: ModelServer) => (server as unknown as { socketPath: { size: number } | null }).socketPath?.size ?? -1;

const eighths = fc.array(fc.integer({ min: -1000, max: 1000 }).map((v) => v / 8), { minLength: 4, maxLength: 4 });
const request = fc.oneof(
  { weight: 6, arbitrary: eighths.map((r) => post(JSON.stringify({ inputs: [r] }))) },
  { weight: 2, arbitrary: fc.array(eighths, { minLength: 1, maxLength: 5 }).map((rs) => post(JSON.stringify({ inputs: rs }), ['content-type:  Application/JSON; charset=utf-8 ', 'Accept: */*'])) },
  { weight: 2, arbitrary: eighths.map((r) => post(`{ "inputs" : ${JSON.stringify(r)} }`, [])) },
  // Of other forms: each hands the connection to the TypeScript path.
  { weight: 1, arbitrary: fc.constantFrom(
    post('{"inputs": [[1, 2]]}'), post('{"inputs": [[1, 2, 3, 4]'), post(''), post('{"inputs": [[1e39, 2, 3, 4]]}'),
    post(Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), ['Content-Type: application/octet-stream']),
    post('{"inputs": [[1, 2, 3, 4]]}', ['Accept: application/octet-stream']),
    post('{"inputs": [[1, 2, 3, 4]]}', ['Connection: close']),
    post('{"inputs": [[1, 2, 3, 4]]}', [], '/v1/models/nope/predict'),
    Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'),
    Buffer.from('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n'),
    Buffer.from('POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n15\r\n{"inputs":[[1,2,3,4]]\r\n1\r\n}\r\n0\r\n\r\n'),
  ) },
);

/** The requests_total lines of a server's metrics, sorted. */
async function requestCounts(server: ModelServer): Promise<string[]> {
  return server.metricsText().split('\n').filter((l) => l.startsWith('mlpkit_requests_total{')).sort();
}

describe.skipIf(!hasPath)('native socket path: whole servers answer as the TypeScript path does', () => {
  let native: { server: ModelServer; port: number };
  let typescript: { server: ModelServer; port: number };
  beforeAll(async () => {
    native = await start();
    typescript = await start({ nativeHttp: false });
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
  });

  it('holds a kept-alive connection it answered, and counts what it answered', async () => {
    const own = await start();
    const socket = connect(own.port, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    await new Promise((r) => socket.on('connect', r));
    socket.write(Buffer.concat([post('{"inputs": [[1, 2, 3, 4]]}'), post('{"inputs": [1, 2, 3, 4.5]}')]));
    await until('two answers', () => Buffer.concat(got).toString().split('HTTP/1.1 200 OK').length === 3);
    expect(nativeHeld(own.server)).toBe(1);
    socket.destroy();
    const text = own.server.metricsText();
    expect(text).toMatch(/mlpkit_requests_total\{model="demo",status="200"\} 2\n/);
    expect(text).toMatch(/mlpkit_request_duration_seconds_count\{model="demo"\} 2\n/);
    expect(text).toMatch(/mlpkit_batch_requests_sum\{model="demo"\} 2\n/);
  });

  it('random pipelined requests of every kind, in random splits: the same bytes back from both servers', async () => {
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 6 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }),
      async (requests, cuts) => {
        const chunks = split(Buffer.concat(requests), cuts);
        const [a, b] = await Promise.all([native, typescript].map((s) => exchange(s.port, chunks, 300)));
        expect(withoutDate(a)).toBe(withoutDate(b));
      }), { numRuns: 40, seed: 21 });
    // The same requests counted the same way (by model and status).
    expect(await requestCounts(native.server)).toEqual(await requestCounts(typescript.server));
  });

  it('a client that pipelines 60 requests with large answers and does not read at first gets every answer, in order', async () => {
    // ~7 MB of answers: more than the socket takes at once, so the native write stops short and
    // the connection goes to the TypeScript path with the rest to write.
    const wide = exactModel(4, 8, 20000, 3);
    const servers2 = [await start({ inlineMacs: 1e9 }, { demo: wide }), await start({ nativeHttp: false, inlineMacs: 1e9 }, { demo: wide })];
    const bytes = Buffer.concat(Array.from({ length: 60 }, (_, i) => post(JSON.stringify({ inputs: [[i, 1, 2, 3]] }))));
    const held: number[] = [];
    const answers = await Promise.all(servers2.map(({ server, port }) => new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      const got: Buffer[] = [];
      socket.on('connect', () => {
        socket.pause();
        socket.write(bytes);
        setTimeout(() => socket.resume(), 300);
      });
      socket.on('data', (d) => {
        got.push(d);
        const text = Buffer.concat(got).toString('latin1');
        if (text.split('HTTP/1.1 200 OK').length === 61 && text.endsWith(']]}')) {
          held.push(nativeHeld(server));
          socket.destroy();
          resolve(text);
        }
      });
    })));
    expect(answers[0].length).toBeGreaterThan(60 * 20000 * 3);
    expect(withoutDate(answers[0])).toBe(withoutDate(answers[1]));
    expect(held.sort()).toEqual([-1, 0]); // the native server's connection was handed back; the other has no native path
  });

  it('a disposed model: its requests go to the TypeScript path, which answers as it does for any disposed model', async () => {
    const doomed = exactModel(4, 8, 3, 4);
    const [n, t] = [await start({}, { demo: doomed }), await start({ nativeHttp: false }, { demo: doomed })];
    const ok = await exchange(n.port, [post('{"inputs": [[1, 2, 3, 4]]}')], 200);
    expect(ok).toContain('200 OK');
    doomed.dispose();
    const [a, b] = await Promise.all([n, t].map((s) => exchange(s.port, [post('{"inputs": [[1, 2, 3, 4]]}')], 200)));
    expect(a).toContain('HTTP/1.1 500');
    expect(withoutDate(a)).toBe(withoutDate(b));
  });

  it('a disposed model whose batch fills in the middle of a read: the reading connection goes back whole, and later turns are sound', async () => {
    // (A batch run early because a chunk filled released the connection being read; the rest
    // of its requests once stayed behind in the batch, pointing at a freed connection.)
    const doomed = exactModel(4, 8, 3, 6);
    const [n, t] = [await start({ maxBatchRows: 4 }, { demo: doomed }), await start({ maxBatchRows: 4, nativeHttp: false }, { demo: doomed })];
    expect(await exchange(n.port, [post('{"inputs": [[1, 2, 3, 4]]}')], 200)).toContain('200 OK');
    doomed.dispose();
    const three = post(JSON.stringify({ inputs: [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]] }));
    for (const bytes of [Buffer.concat([three, three, three]), post('{"inputs": [[1, 2, 3, 4]]}'), three]) {
      const [a, b] = await Promise.all([n, t].map((s) => exchange(s.port, [bytes], 200)));
      expect(a).toContain('HTTP/1.1 500');
      expect(withoutDate(a)).toBe(withoutDate(b));
    }
  });
});

describe.skipIf(!hasPath)('native socket path: timeouts, close, worker threads', () => {
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
  });

  it('an idle connection closes after the keep-alive timeout; a silent one gets 408 after headersTimeoutMs', async () => {
    const { server, port } = await start({ keepAliveTimeoutMs: 100, headersTimeoutMs: 300, requestTimeoutMs: 300 });
    // The client never closes (its own timeout is past until's): only the server's idle close ends it.
    let idleText: string | null = null;
    void exchange(port, [post('{"inputs": [[1, 2, 3, 4]]}')], 60_000).then((text) => (idleText = text));
    const silent = exchange(port, [], 60_000);
    await until('both held natively', () => nativeHeld(server) === 2);
    await until('the idle connection closed by the server', () => idleText !== null);
    expect(idleText).toContain('200 OK');
    const b = await silent;
    expect(b).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="408"\} 1\n/);
  });

  it('close(): an idle native connection is handed back and closes at once', async () => {
    const { server, port } = await start();
    const socket: Socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    const closed = new Promise((r) => socket.on('close', r));
    await new Promise((r) => socket.on('connect', r));
    socket.write(post('{"inputs": [[1, 2, 3, 4]]}'));
    await until('answered', () => got.length > 0);
    expect(nativeHeld(server)).toBe(1);
    await server.close({ graceMs: 5000 });
    await closed;
    expect(nativeHeld(server)).toBe(0);
  });

  it('a worker thread that serves natively and ends with a connection open does not take the process down', async () => {
    const source = `
      const { parentPort } = require('node:worker_threads');
      const { createRequire } = require('node:module');
      (async () => {
        const { createServer, Mlp } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
        const net = new Mlp({ inputs: 4, layers: [{ units: 3 }] }, { backend: 'native' });
        const server = createServer({ models: { demo: net } });
        const { port } = await server.listen(0);
        parentPort.postMessage(port);
      })();`;
    const worker = new Worker(source, { eval: true });
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    await new Promise((r) => socket.on('connect', r));
    socket.write(post('{"inputs": [[1, 2, 3, 4]]}'));
    await until('answered', () => got.length > 0);
    expect(Buffer.concat(got).toString()).toContain('200 OK');
    const code = await worker.terminate();
    expect(code).toBe(1);
    socket.destroy();
  });
});

describe.skipIf(!hasPath)('native socket path: overload, sockets closed from JS, collection', () => {
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
  });

  it('requests past maxQueueRows in one turn get the TypeScript path\'s 503, and are counted as 503', async () => {
    const { server, port } = await start({ maxQueueRows: 4, maxBatchRows: 4 });
    const sockets = await Promise.all(Array.from({ length: 40 }, () => new Promise<Socket>((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.setNoDelay(true);
    })));
    await until('all held natively', () => nativeHeld(server) === 40);
    const answers = sockets.map((s) => new Promise<string>((resolve) => s.once('data', (d) => resolve(d.toString('latin1')))));
    // Written before the event loop turns again (loopback writes complete at once), so the
    // server reads all 40 in one turn.
    for (const s of sockets) s.write(post('{"inputs": [[1, 2, 3, 4]]}'));
    const texts = await Promise.all(answers);
    for (const s of sockets) s.destroy();
    // As the TypeScript batcher: the turn's first request runs at once, 4 rows queue, 35 are refused.
    expect(texts.filter((t) => t.startsWith('HTTP/1.1 200 OK')).length).toBe(5);
    const refused = texts.filter((t) => t.startsWith('HTTP/1.1 503'));
    expect(refused.length).toBe(35);
    const err = overloaded('demo', { maxQueueRows: 4, retryAfterSeconds: 1 });
    const body = errorBody(err.code, err.message);
    expect(withoutDate(refused[0])).toBe(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
      `Retry-After: 1\r\nDate: -\r\n${TAIL}${body}`);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="demo",status="503"\} 35\n/);
  });

  it('a held socket destroyed from JS closes for the client, and the next connection (its fd number reused) is served', async () => {
    const { server, port } = await start({ headersTimeoutMs: 1000 });
    const accepted: Socket[] = [];
    server.http.on('connection', (s: Socket) => accepted.push(s));
    const a = connect(port, '127.0.0.1');
    a.on('error', () => {});
    const aClosed = new Promise((r) => a.on('close', r));
    await until('A held natively', () => nativeHeld(server) === 1);
    accepted[0].destroy();
    await aClosed;
    await until('A let go', () => nativeHeld(server) === 0);
    const b = await exchange(port, [post('{"inputs": [[1, 2, 3, 4]]}'), Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), post('{"inputs": [[4, 3, 2, 1]]}')], 300);
    expect(b.split('HTTP/1.1 200 OK').length).toBe(4);
  });

  it('200 clients that leave at once, after answers or before a request, are all closed on the server too', async () => {
    const { server, port } = await start();
    const sockets = await Promise.all(Array.from({ length: 200 }, () => new Promise<Socket>((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', () => {});
    })));
    await until('all held natively', () => nativeHeld(server) === 200);
    const answered = sockets.slice(0, 100).map((s) => new Promise((r) => s.once('data', r)));
    for (const s of sockets.slice(0, 100)) s.write(post('{"inputs": [[1, 2, 3, 4]]}'));
    await Promise.all(answered);
    for (const s of sockets) s.destroy();
    const open = () => new Promise<number>((resolve) => server.http.getConnections((_, n) => resolve(n)));
    await until('every connection closed', async () => nativeHeld(server) === 0 && (await open()) === 0);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="demo",status="200"\} 100\n/);
  });

  it('a closed server, its models and the native path can be collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let collected = 0;
    const registry = new FinalizationRegistry(() => void collected++);
    await (async () => {
      const model = exactModel(4, 8, 3, 9);
      const server = createServer({ models: { demo: model } });
      const { port } = await server.listen(0);
      expect(await exchange(port, [post('{"inputs": [[1, 2, 3, 4]]}')], 100)).toContain('200 OK');
      await server.close({ graceMs: 100 });
      registry.register(server, 'server');
      registry.register(model, 'model');
    })();
    for (let i = 0; i < 50 && collected < 2; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(collected).toBe(2);
  });
});
