// The inference server: JSON and binary predict equal model.predict; concurrent requests are
// merged into one predict call and each gets its own rows back; every kind of bad request gets
// its 4xx and a JSON error while the server keeps serving; a full queue answers 503; close()
// lets the requests in flight finish. No timing assertions: where a test needs requests to pile
// up it holds the model with a gate and waits for the queue it can see in /metrics.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, createServer, type BatchEvent, type ModelServer, type ServableModel, type ServerOptions } from '../lib/index.js';
import { backendsUnderTest, randomArray } from './helpers.js';
import { gatedModel, until } from './server-support.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const net = new Mlp({ inputs: 4, layers: [{ units: 16, activation: 'relu' }, { units: 3 }], seed: 1 }, { backend });
const servers: ModelServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
});

async function start(options: Partial<ServerOptions> = {}): Promise<{ server: ModelServer; url: string }> {
  const server = createServer({ models: { demo: net }, ...options });
  servers.push(server);
  const { url } = await server.listen(0);
  return { server, url };
}

const queueDepth = (server: ModelServer) => Number(/mlpkit_queue_depth\{model="demo"\} (\d+)/.exec(server.metricsText())?.[1]);

function rowsOf(x: Float32Array): number[][] {
  return Array.from({ length: x.length / net.inputs }, (_, r) => Array.from(x.subarray(r * net.inputs, (r + 1) * net.inputs)));
}

async function predictJson(url: string, body: unknown, model = 'demo') {
  const res = await fetch(`${url}/v1/models/${model}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { outputs?: number[][] | number[]; shape?: number[]; error?: { code: string; message: string } } };
}

/** One request over a raw socket: everything the server sent until it closed or `timeoutMs` passed. */
function rawRequest(url: string, chunks: string[], timeoutMs = 5000): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d.toString()));
    socket.on('close', () => resolve(got));
    socket.on('error', () => resolve(got));
    socket.on('connect', () => chunks.forEach((c) => socket.write(c)));
    setTimeout(() => socket.destroy(), timeoutMs).unref();
  });
}

describe('predict', () => {
  it('JSON rows, flat rows with a shape and a single flat row all equal model.predict', async () => {
    const { url } = await start();
    const x = randomArray(5 * net.inputs, 1);
    const want = net.predict(x);
    const nested = await predictJson(url, { inputs: rowsOf(x) });
    expect(nested.status).toBe(200);
    expect(nested.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Float32Array.from((nested.body.outputs as number[][]).flat())).toEqual(want);

    const flat = await predictJson(url, { inputs: Array.from(x), shape: [5, net.inputs] });
    expect(flat.body.shape).toEqual([5, net.outputs]);
    expect(Float32Array.from(flat.body.outputs as number[])).toEqual(want);

    const one = await predictJson(url, { inputs: Array.from(x.subarray(0, net.inputs)) });
    expect(Float32Array.from(one.body.outputs as number[])).toEqual(want.subarray(0, net.outputs));
  });

  it('binary float32 rows in and out (Accept: application/octet-stream), JSON out otherwise', async () => {
    const { url } = await start();
    const x = randomArray(7 * net.inputs, 2);
    const want = net.predict(x);
    const res = await fetch(`${url}/v1/models/demo/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', accept: 'application/octet-stream' },
      body: Buffer.from(x.buffer),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('mlpkit-shape')).toBe(`7,${net.outputs}`);
    expect(new Float32Array(await res.arrayBuffer())).toEqual(want);

    const asJson = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(x.buffer) });
    expect(Float32Array.from(((await asJson.json()) as { outputs: number[][] }).outputs.flat())).toEqual(want);
  });

  it('merges concurrent requests into one predict call and gives each its own rows', async () => {
    const model = gatedModel(net);
    const batches: BatchEvent[] = [];
    const { server, url } = await start({ models: { demo: model }, inlineMacs: 0, maxBatchRows: 256, onBatch: (e) => batches.push(e) });
    const inputs = Array.from({ length: 40 }, (_, i) => randomArray((1 + (i % 3)) * net.inputs, 100 + i));
    const first = predictJson(url, { inputs: rowsOf(inputs[0]) });
    await until('the first call', () => model.calls.length === 1);
    const rest = inputs.slice(1).map((x) => predictJson(url, { inputs: rowsOf(x) }));
    await until('39 queued requests', () => queueDepth(server) === 39);
    model.release();
    const results = await Promise.all([first, ...rest]);
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(Float32Array.from((r.body.outputs as number[][]).flat())).toEqual(net.predict(inputs[i]));
    });
    const totalRows = inputs.reduce((n, x) => n + x.length / net.inputs, 0);
    expect(batches.map((b) => b.requests)).toEqual([1, 39]);
    expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(totalRows);
    expect(model.calls).toEqual([1, totalRows - 1]);
    // ... and the metrics say so: one call of 1 request, one of 33-64.
    const metrics = server.metricsText();
    expect(metrics).toMatch(/mlpkit_batch_requests_bucket\{model="demo",le="32"\} 1\n/);
    expect(metrics).toMatch(/mlpkit_batch_requests_bucket\{model="demo",le="64"\} 2\n/);
    expect(metrics).toMatch(/mlpkit_requests_total\{model="demo",status="200"\} 40\n/);
  });

  it('with batching off every request is its own predict call', async () => {
    const batches: BatchEvent[] = [];
    const { url } = await start({ batching: false, onBatch: (e) => batches.push(e) });
    const inputs = Array.from({ length: 12 }, (_, i) => randomArray(net.inputs, 200 + i));
    const results = await Promise.all(inputs.map((x) => predictJson(url, { inputs: rowsOf(x) })));
    results.forEach((r, i) => expect(Float32Array.from((r.body.outputs as number[][]).flat())).toEqual(net.predict(inputs[i])));
    expect(batches.map((b) => b.requests)).toEqual(new Array(12).fill(1));
  });

  it('lists the models and reports health, readiness and Prometheus metrics', async () => {
    const { url } = await start({ models: { demo: net, other: net } });
    const list = (await (await fetch(`${url}/v1/models`)).json()) as { models: { name: string; inputs: number; outputs: number; kind: string }[] };
    expect(list.models.map((m) => [m.name, m.inputs, m.outputs, m.kind])).toEqual([['demo', 4, 3, 'float'], ['other', 4, 3, 'float']]);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    await predictJson(url, { inputs: [[1, 2, 3, 4]] }, 'other');
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    const text = await res.text();
    for (const line of [
      '# TYPE mlpkit_requests_total counter', '# TYPE mlpkit_request_duration_seconds histogram', '# TYPE mlpkit_batch_rows histogram',
      '# TYPE mlpkit_queue_depth gauge', 'mlpkit_requests_total{model="other",status="200"} 1', 'mlpkit_request_duration_seconds_count{model="other"} 1',
      'mlpkit_queue_depth{model="demo"} 0',
    ]) expect(text).toContain(line);
    expect(text).toMatch(/process_resident_memory_bytes \d+/);
  });
});

describe('bad requests get a 4xx with a JSON error and the server keeps serving', () => {
  it('answers every kind of bad request', async () => {
    const { url } = await start({ maxBodyBytes: 4096 });
    const post = (body: string | Buffer, type = 'application/json', path = '/v1/models/demo/predict') =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
    const nanRow = new Float32Array([1, NaN, 2, 3]);
    const cases: [string, () => Promise<Response>, number, string][] = [
      ['malformed JSON', () => post('{"inputs": [[1, 2, 3, 4]'), 400, 'invalid_json'],
      ['NaN is not JSON', () => post('{"inputs": [[1, NaN, 3, 4]]}'), 400, 'invalid_json'],
      ['not an object', () => post('[[1, 2, 3, 4]]'), 400, 'invalid_request'],
      ['no inputs', () => post('{"rows": [[1, 2, 3, 4]]}'), 400, 'invalid_request'],
      ['empty inputs', () => post('{"inputs": []}'), 400, 'invalid_request'],
      ['too few features', () => post('{"inputs": [[1, 2, 3]]}'), 400, 'wrong_feature_count'],
      ['nested one level too deep', () => post('{"inputs": [[[1, 2, 3, 4]]]}'), 400, 'invalid_request'],
      ['ragged rows', () => post('{"inputs": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}'), 400, 'wrong_feature_count'],
      ['flat without shape', () => post('{"inputs": [1, 2, 3, 4, 5, 6, 7, 8]}'), 400, 'wrong_feature_count'],
      ['shape that does not fit', () => post('{"inputs": [1, 2, 3, 4], "shape": [2, 4]}'), 400, 'invalid_request'],
      ['a string', () => post('{"inputs": [[1, "2", 3, 4]]}'), 400, 'invalid_number'],
      ['a null', () => post('{"inputs": [[1, null, 3, 4]]}'), 400, 'invalid_number'],
      ['beyond float32', () => post('{"inputs": [[1, 1e39, 3, 4]]}'), 400, 'non_finite'],
      ['binary NaN', () => post(Buffer.from(nanRow.buffer), 'application/octet-stream'), 400, 'non_finite'],
      ['binary partial row', () => post(Buffer.alloc(20), 'application/octet-stream'), 400, 'wrong_feature_count'],
      ['binary empty', () => post(Buffer.alloc(0), 'application/octet-stream'), 400, 'invalid_request'],
      ['unsupported type', () => post('x', 'multipart/form-data'), 415, 'unsupported_media_type'],
      ['oversized body', () => post(`{"inputs": [[${'1,'.repeat(3000)}1]]}`), 413, 'payload_too_large'],
      ['unknown model', () => post('{"inputs": [[1, 2, 3, 4]]}', 'application/json', '/v1/models/nope/predict'), 404, 'model_not_found'],
      ['unknown path', () => fetch(`${url}/v2/predict`), 404, 'not_found'],
      ['GET on predict', () => fetch(`${url}/v1/models/demo/predict`), 405, 'method_not_allowed'],
      ['DELETE on metrics', () => fetch(`${url}/metrics`, { method: 'DELETE' }), 405, 'method_not_allowed'],
    ];
    for (const [what, send, status, code] of cases) {
      const res = await send();
      expect(res.status, what).toBe(status);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code, what).toBe(code);
      expect(body.error.message.length, what).toBeGreaterThan(10);
    }
    expect((await fetch(`${url}/v1/models/demo/predict`)).headers.get('allow')).toBe('POST');
    const ok = await predictJson(url, { inputs: [[1, 2, 3, 4]] });
    expect(ok.status).toBe(200);
  });

  it('a model that throws gets 500 with a JSON error, and the next request is served', async () => {
    const broken: ServableModel = {
      inputs: 4,
      outputs: 3,
      predict: (x) => (x[0] === 13 ? (() => { throw new Error('model failure for the test'); })() : net.predict(x)),
      predictAsync: async (x) => net.predict(x),
    };
    const { url } = await start({ models: { demo: broken } });
    const bad = await predictJson(url, { inputs: [[13, 2, 3, 4]] });
    expect(bad.status).toBe(500);
    expect(bad.body.error?.code).toBe('internal');
    expect((await predictJson(url, { inputs: [[1, 2, 3, 4]] })).status).toBe(200);
  });

  it('an oversized chunked body is cut off with 413', async () => {
    const { url } = await start({ maxBodyBytes: 1024 });
    const chunk = '1,'.repeat(400);
    const reply = await rawRequest(url, [
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
      ...[0, 1, 2].map(() => `${chunk.length.toString(16)}\r\n${chunk}\r\n`),
    ], 500); // the rest of the body is discarded and the connection kept (96.server-review): stop listening after the answer
    expect(reply).toMatch(/^HTTP\/1.1 413 /);
    expect(reply).toMatch(/"code":"payload_too_large"/);
    expect((await predictJson(url, { inputs: [[1, 2, 3, 4]] })).status).toBe(200);
  });

  it('malformed HTTP gets 400 and a slow client (slow-loris) gets 408, both in JSON', async () => {
    const { url } = await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const garbage = await rawRequest(url, ['THIS IS NOT HTTP\r\n\r\n']);
    expect(garbage).toMatch(/^HTTP\/1.1 400 Bad Request/);
    expect(garbage).toMatch(/"code":"bad_http"/);
    // Headers that never end: the server answers and closes rather than hold the socket.
    const slow = await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\n']);
    expect(slow).toMatch(/^HTTP\/1.1 408 Request Timeout/);
    expect(slow).toMatch(/"code":"request_timeout"/);
    // A body that never comes: the same.
    const slowBody = await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inputs"']);
    expect(slowBody).toMatch(/^HTTP\/1.1 408 /);
    expect((await predictJson(url, { inputs: [[1, 2, 3, 4]] })).status).toBe(200);
  });
});

describe('HTTP edge cases (from an adversarial review)', () => {
  it('a malformed request pipelined behind a valid one: the valid one gets its own answer first, then the connection closes', async () => {
    const { server, url } = await start();
    const body = JSON.stringify({ inputs: [[1, 2, 3, 4]] });
    const got = await rawRequest(url, [
      `POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      'BROKEN REQUEST\r\n\r\n',
    ]);
    expect(got).toMatch(/^HTTP\/1.1 200 OK/);
    expect(got).toMatch(/"outputs"/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="400"\} 1\n/);
  });

  it('client errors are counted: bad HTTP, slow headers, a slow body (408, not "aborted")', async () => {
    const { server, url } = await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    await rawRequest(url, ['THIS IS NOT HTTP\r\n\r\n']);
    await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\n']);
    await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inputs"']);
    // The slow body's response is counted when it closes, which may come after the client saw the socket close.
    await until('the slow body counted', () => /model="demo",status="(408|aborted)"/.test(server.metricsText()));
    const text = server.metricsText();
    expect(text).toMatch(/mlpkit_requests_total\{model="",status="400"\} 1\n/);
    expect(text).toMatch(/mlpkit_requests_total\{model="",status="408"\} 1\n/);
    expect(text).toMatch(/mlpkit_requests_total\{model="demo",status="408"\} 1\n/);
    expect(text).not.toMatch(/status="aborted"/);
  });

  it('Expect: 100-continue with an over-limit Content-Length gets 413 without an invitation to send it', async () => {
    const { url } = await start({ maxBodyBytes: 1000 });
    const got = await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n'], 2000);
    expect(got).toMatch(/^HTTP\/1.1 413 /);
    expect(got).not.toMatch(/100 Continue/);
    const fits = await rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 24\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n', '{"inputs":[[1, 2, 3, 4]]}'.slice(0, 24)], 2000);
    expect(fits).toMatch(/^HTTP\/1.1 100 Continue/);
  });

  it('405 on a GET endpoint allows GET and HEAD', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/healthz`, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });

  it('JSON rows are checked before their floats are allocated (a wide model, a body of empty rows)', async () => {
    const wide = new Mlp({ inputs: 16384, layers: [{ units: 1 }] }, { backend });
    const { url } = await start({ models: { demo: wide }, maxBodyBytes: 2 << 20 });
    // 500,001 rows of 16384 floats would be 32 GB; the first row is already wrong.
    const body = `{"inputs":[[]${',0'.repeat(500_000)}]}`;
    const res = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('wrong_feature_count');
    wide.dispose();
  });

  it('an onBatch hook that throws, or a model whose predictAsync throws instead of rejecting, loses no request', async () => {
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (errors.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      const { url } = await start({ inlineMacs: 0, onBatch: () => { throw new Error('hook failed'); } });
      const answers = await Promise.all([0, 1, 2, 3].map((i) => predictJson(url, { inputs: [[1, 2, 3, i]] })));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      expect(errors.join('')).toMatch(/onBatch hook threw: Error: hook failed/);
    } finally {
      process.stderr.write = write;
    }
    let calls = 0;
    const flaky: ServableModel = {
      inputs: net.inputs, outputs: net.outputs, predict: (x) => net.predict(x),
      predictAsync(x) {
        if (++calls === 1) throw new Error('thrown, not rejected');
        return Promise.resolve(net.predict(x));
      },
    };
    const { url } = await start({ models: { demo: flaky }, inlineMacs: 0 });
    expect((await predictJson(url, { inputs: [[1, 2, 3, 4]] })).status).toBe(500);
    for (let i = 0; i < 3; i++) expect((await predictJson(url, { inputs: [[1, 2, 3, i]] })).status).toBe(200);
  });
});

describe('overload and shutdown', () => {
  it('answers 503 with Retry-After when the queue is full, and serves the queued requests', async () => {
    const model = gatedModel(net);
    const { server, url } = await start({ models: { demo: model }, inlineMacs: 0, maxQueueRows: 4, retryAfterSeconds: 2 });
    const row = () => ({ inputs: [[1, 2, 3, 4]] });
    const running = predictJson(url, row());
    await until('the first call', () => model.calls.length === 1);
    const queued = [0, 1, 2, 3].map(() => predictJson(url, row()));
    await until('a full queue', () => queueDepth(server) === 4);
    const refused = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', body: JSON.stringify(row()) });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    model.release();
    for (const r of await Promise.all([running, ...queued])) expect(r.status).toBe(200);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="demo",status="503"\} 1\n/);
  });

  it('answers 503 to a request that waited in the queue past queueTimeoutMs', async () => {
    const model = gatedModel(net);
    const { server, url } = await start({ models: { demo: model }, inlineMacs: 0, queueTimeoutMs: 1 });
    const running = predictJson(url, { inputs: [[1, 2, 3, 4]] });
    await until('the first call', () => model.calls.length === 1);
    const late = predictJson(url, { inputs: [[1, 2, 3, 4]] });
    await until('a queued request', () => queueDepth(server) === 1);
    await new Promise((r) => setTimeout(r, 20));
    model.release();
    expect((await running).status).toBe(200);
    const r = await late;
    expect(r.status).toBe(503);
    expect(r.body.error?.code).toBe('queue_timeout');
    expect(r.headers.get('retry-after')).toBe('1');
  });

  it('close() stops accepting, fails readiness and finishes the requests in flight', async () => {
    const model = gatedModel(net);
    const { server, url } = await start({ models: { demo: model }, inlineMacs: 0 });
    const x = randomArray(3 * net.inputs, 9);
    const inFlight = rowsOf(x).map((row) => predictJson(url, { inputs: [row] }));
    await until('one running and two queued', () => model.calls.length === 1 && queueDepth(server) === 2);
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await until('the listener to close', () => !server.http.listening);
    const refused = await fetch(`${url}/healthz`).then(() => 'answered', (err: Error) => String((err.cause as { code?: string })?.code ?? err.message));
    expect(refused).toBe('ECONNREFUSED');
    expect(closed).toBe(false);
    model.release();
    const results = await Promise.all(inFlight);
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.headers.get('connection')).toBe('close');
      expect(Float32Array.from((r.body.outputs as number[][]).flat())).toEqual(net.predict(x.subarray(i * net.inputs, (i + 1) * net.inputs)));
    });
    await closing;
    expect(closed).toBe(true);
  });

  it('close() still answers a client that is slow to send its headers with 408 (Server.close stops Node\'s own checks)', async () => {
    const { server, url } = await start({ headersTimeoutMs: 300 });
    const slow = rawRequest(url, ['POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\n'], 20_000);
    await new Promise((r) => setTimeout(r, 100)); // the connection is open and its headers unfinished
    // Before, the client was cut without an answer when the grace period ran out.
    await server.close({ graceMs: 4000 });
    expect(await slow).toMatch(/^HTTP\/1.1 408 /);
  });

  it('pipelined requests on a connection the client closes are all ended: counted, out of the queue, not in flight', async () => {
    const gated = gatedModel(net);
    const server = createServer({ models: { demo: gated }, inlineMacs: 0 });
    servers.push(server);
    const { url } = await server.listen(0);
    const body = JSON.stringify({ inputs: [[1, 2, 3, 4]] });
    const one = `POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise((r) => socket.on('connect', r));
    socket.write(one.repeat(5));
    const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(server.metricsText())?.[1] ?? NaN);
    await until('the five requests to arrive', () => metric('mlpkit_requests_in_flight') === 5);
    socket.destroy();
    // Before, the four responses queued behind the first never closed: 4 stayed in flight.
    await until('every request to end', () => metric('mlpkit_requests_in_flight') === 0);
    expect(/mlpkit_requests_total\{model="demo",status="aborted"\} 5/.test(server.metricsText())).toBe(true);
    await until('the queue to empty', () => queueDepth(server) === 0);
    gated.release();
  });

  it('a connection whose last response was written under backpressure still closes after keepAliveTimeoutMs idle', async () => {
    const wide = new Mlp({ inputs: 4, layers: [{ units: 64 }] }, { backend });
    const server = createServer({ models: { wide }, keepAliveTimeoutMs: 300 });
    servers.push(server);
    const { url } = await server.listen(0);
    const rows = new Float32Array(8192 * 4).fill(0.5);
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise((r) => socket.on('connect', r));
    socket.pause(); // the ~4 MB JSON answer stalls in the socket until we read
    socket.write(`POST /v1/models/wide/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${rows.byteLength}\r\n\r\n`);
    socket.write(Buffer.from(rows.buffer));
    let got = 0;
    socket.on('data', (d) => (got += d.length));
    await new Promise((r) => setTimeout(r, 200));
    const closed = new Promise<boolean>((resolve) => {
      socket.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 5000).unref();
    });
    socket.resume();
    // Before, the stalled-write watch cleared node's keep-alive timer: the connection stayed open.
    expect(await closed).toBe(true);
    expect(got).toBeGreaterThan(1 << 20);
    wide.dispose();
  });

  it('a request without Host, a shape beside rows that contradicts them, and a compressed body get JSON errors', async () => {
    const { server, url } = await start();
    const noHost = await rawRequest(url, ['GET /healthz HTTP/1.1\r\n\r\n'], 1000);
    expect(noHost).toMatch(/^HTTP\/1.1 400 [^]*"code":"bad_http"[^]*no Host header/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="400"\} 1/);
    const contradiction = await predictJson(url, { inputs: [[1, 2, 3, 4]], shape: [3, 4] });
    expect(contradiction.status).toBe(400);
    expect(contradiction.body.error!.message).toMatch(/"shape" \[3,4\] does not match the 1 rows of 4/);
    // Rows of the wrong width are that error first, shape or not.
    const narrow = await predictJson(url, { inputs: [[1, 2, 3]], shape: [1, 3] });
    expect(narrow.body.error!.code).toBe('wrong_feature_count');
    const gz = await fetch(`${url}/v1/models/demo/predict`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: '{"inputs":[[1,2,3,4]]}' });
    expect(gz.status).toBe(415);
    expect(((await gz.json()) as { error: { message: string } }).error.message).toMatch(/Content-Encoding 'gzip' is not supported/);
  });

  it('rejects bad options with the argument named', () => {
    expect(() => createServer({ models: {} })).toThrow(/at least one model/);
    expect(() => createServer({ models: { 'a/b': net } })).toThrow(/URL-safe/);
    expect(() => createServer({ models: { m: {} as ServableModel } })).toThrow(/Expected an Mlp, QuantizedMlp or SparseMlp for options.models.m/);
    // A model of no inputs, and a disposed one (every request would be a 500 while /v1/models lists it).
    const empty = { inputs: 0, outputs: 1, predict: net.predict.bind(net), predictAsync: net.predictAsync.bind(net) };
    expect(() => createServer({ models: { m: empty } })).toThrow(/options.models.m .*inputs and outputs >= 1/);
    const gone = new Mlp({ inputs: 2, layers: [{ units: 1 }] });
    gone.dispose();
    expect(() => createServer({ models: { m: gone } })).toThrow(expect.objectContaining({ code: 'ERR_MLPKIT_DISPOSED', message: expect.stringMatching(/options.models.m/) }));
    expect(() => createServer({ models: { m: net }, maxBatchRows: 0 })).toThrow(/options.maxBatchRows/);
    // A batch must not wait longer than its requests may queue (1e13 us once made setTimeout spin).
    expect(() => createServer({ models: { m: net }, maxWaitUs: 1e13 })).toThrow(/options.maxWaitUs \(10000000000000\) < options.queueTimeoutMs/);
    expect(() => createServer({ models: { m: net }, maxWaitUs: 3e6, queueTimeoutMs: 1000 })).toThrow(/options.maxWaitUs/);
    // Durations past setTimeout's 2^31 - 1 ms (which would fire after 1 ms).
    expect(() => createServer({ models: { m: net }, queueTimeoutMs: 3e9, maxWaitUs: 2.5e12 })).toThrow(/an integer between 1 and 2147483647 for options.queueTimeoutMs/);
    expect(() => createServer({ models: { m: net }, keepAliveTimeoutMs: 2 ** 31 })).toThrow(/options.keepAliveTimeoutMs/);
    expect(() => createServer({ models: { m: net }, headersTimeoutMs: 5000, requestTimeoutMs: 1000 })).toThrow(/requestTimeoutMs/);
  });
});

describe('mlpkit serve', () => {
  async function serveAndStop(extra: string[], listening: RegExp, stopped: RegExp): Promise<void> {
    // The built bin in a child process: the only way to send it a real signal.
    const dir = mkdtempSync(join(tmpdir(), 'mlpkit-serve-'));
    try {
      await net.save(join(dir, 'demo.safetensors'));
      const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', join(dir, 'demo.safetensors'), '--port', '0', '--backend', backend, ...extra],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      // 'close', not 'exit': by then everything the command wrote to stderr has been read.
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await until('the server to listen', () => listening.test(out) || child.exitCode !== null);
      const url = listening.exec(out)?.[1];
      expect(url, err).toBeDefined();
      for (let i = 0; i < 4; i++) {
        const r = await predictJson(url!, { inputs: [[1, 2, 3, i]] });
        expect(Float32Array.from((r.body.outputs as number[][]).flat())).toEqual(net.predict(new Float32Array([1, 2, 3, i])));
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(err).toMatch(stopped);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('serves a model file and exits 0 after a graceful SIGTERM', async () => {
    await serveAndStop([], /listening on (http:\S+);/, /SIGTERM: finishing the requests in flight\nmlpkit serve: stopped/);
  });

  it('serves with --workers 2 (node:cluster) and stops every worker on SIGTERM', async () => {
    await serveAndStop(['--workers', '2'], /2 workers listening on (http:\S+)/, /SIGTERM: stopping the workers/);
  });

  it('says what is wrong with a bad command line', async () => {
    const run = (args: string[]) => new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, ['dist/cli/main.js', 'serve', ...args], (e, _o, stderr) => resolve({ code: (e as { code?: number } | null)?.code ?? 0, stderr })));
    const missing = await run(['nope.safetensors', '--port', '0']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot open 'nope.safetensors': no such file or directory/);
    // With workers each one fails to load it: the command exits 1 instead of restarting them forever.
    const workers = await run(['nope.safetensors', '--port', '0', '--workers', '2', '--threads', '1']);
    expect(workers.code).toBe(1);
    expect(workers.stderr).toMatch(/cannot open 'nope.safetensors'/);
    expect(workers.stderr).toMatch(/before it listened; stopping/);
    const twice = await run(['a=x.safetensors', 'a=y.safetensors']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/two models are named 'a'/);
  });
});
