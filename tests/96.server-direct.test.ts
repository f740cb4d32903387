// The direct HTTP path (lib/server/direct-http.ts): predict requests read off the socket must be
// answered byte for byte as node:http answers them (Date aside), in every split of the client's
// writes, pipelined with requests of other forms that hand the connection to node:http. Two
// servers of the same model, one with directHttp off, get the same bytes and must send the same
// bytes back. The model runs on the reference backend, whose rows do not depend on which rows
// share their batch, so a batch formed differently cannot change an answer.

import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mlp, createServer, type ModelServer, type ServerOptions } from '../lib/index.js';
import { exchange, gatedModel, post, split, until, withoutDate } from './server-support.js';

const net = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 3 }], seed: 5 }, { backend: 'reference' });
const servers: ModelServer[] = [];
let direct: { server: ModelServer; port: number };
let viaNode: { server: ModelServer; port: number };

async function start(options: Partial<ServerOptions> = {}): Promise<{ server: ModelServer; port: number }> {
  const server = createServer({ models: { demo: net }, ...options });
  servers.push(server);
  const { port } = await server.listen(0);
  return { server, port };
}

beforeAll(async () => {
  direct = await start();
  viaNode = await start({ directHttp: false });
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
});

const rowJson = (row: number[]) => JSON.stringify({ inputs: [row] });
const row = fc.array(fc.integer({ min: -1000, max: 1000 }).map((v) => v / 8), { minLength: 4, maxLength: 4 });

/** Requests of every kind: the direct form, and forms that go to node:http (marked). */
const request = fc.oneof(
  row.map((r) => post(rowJson(r))),
  row.map((r) => post(Buffer.from(new Float32Array(r).buffer), ['Content-Type: application/octet-stream', 'Accept: application/octet-stream'])),
  row.map((r) => post(rowJson(r), ['content-type:   application/json  ', 'X-Trace: a,b', 'ACCEPT: application/json'])),
  fc.constant(post('{"inputs": [[1, 2]]}')), // 400 wrong_feature_count, direct
  fc.constant(post('{"inputs": [[1, 2, 3, 4]')), // 400 invalid_json, direct
  fc.constant(post('')), // empty body, direct
  // to node:http:
  fc.constant(Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')),
  fc.constant(post(rowJson([1, 2, 3, 4]), [], '/v1/models/nope/predict')),
  fc.constant(post(rowJson([1, 2, 3, 4]), [], '/v1/models/demo/predict?trace=1')),
  fc.constant(post(rowJson([1, 2, 3, 4]), ['Content-Type: text/html'])), // 415
  fc.constant(post(rowJson([1, 2, 3, 4]), ['Content-Encoding: gzip'])), // 415
  fc.constant(post(rowJson([1, 2, 3, 4]), ['User-Agent: caf\xe9'])), // obs-text: node accepts it
  fc.constant(Buffer.from(`POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"inp\r\n12\r\nuts": [[1,2,3,4]]}\r\n0\r\n\r\n`)),
);



describe('the direct HTTP path answers as node:http does', () => {
  it('pipelined requests of every kind, in any split of the writes: the same bytes back (Date aside)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 6 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
        async (requests, cuts) => {
          const bytes = Buffer.concat([...requests, post(rowJson([4, 3, 2, 1]), ['Connection: close'])]);
          const chunks = split(bytes, cuts);
          const [a, b] = await Promise.all([exchange(direct.port, chunks), exchange(viaNode.port, chunks)]);
          expect(withoutDate(a)).toBe(withoutDate(b));
          expect(a).toMatch(/^HTTP\/1\.1 /);
        }),
      { numRuns: 60 },
    );
  });

  it('a predict request sent a byte at a time is answered', async () => {
    const bytes = post(rowJson([1, 2, 3, 4]), ['Connection: close']);
    const got = await exchange(direct.port, split(bytes, Array.from({ length: bytes.length }, (_, k) => k / bytes.length)));
    expect(withoutDate(got)).toBe(withoutDate(await exchange(viaNode.port, [bytes])));
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\n\{"outputs":\[\[/);
  });

  it('requests outside the strict form get node:http\'s answer (smuggling shapes, bad bytes, big heads)', async () => {
    const odd = [
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost : x\r\nContent-Length: 2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}',
      `POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17_000)}\r\nContent-Length: 2\r\n\r\n{}`,
      'post /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.0\r\nHost: x\r\nContent-Length: 22\r\n\r\n{"inputs":[[1,2,3,4]]}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{}',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 22\r\n\r\n{"inputs":[[1,2,3,4]]}',
    ];
    for (const text of odd) {
      const chunks = [Buffer.from(text, 'latin1'), post(rowJson([1, 2, 3, 4]), ['Connection: close'])];
      const [a, b] = await Promise.all([exchange(direct.port, chunks, 3000), exchange(viaNode.port, chunks, 3000)]);
      expect(withoutDate(a), JSON.stringify(text.slice(0, 80))).toBe(withoutDate(b));
    }
    // Alone: node:http drops what follows an upgrade request, as part of the new protocol or
    // not depending on how the reads fell.
    const upgrade = Buffer.from('POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 22\r\n\r\n{"inputs":[[1,2,3,4]]}');
    const [a, b] = await Promise.all([exchange(direct.port, [upgrade], 2000), exchange(viaNode.port, [upgrade], 2000)]);
    expect(withoutDate(a)).toBe(withoutDate(b));
  });

  it('predict requests on the direct path emit no request event on server.http; other requests and directHttp: false do', async () => {
    const seen = { direct: 0, viaNode: 0 };
    const countDirect = () => seen.direct++;
    const countNode = () => seen.viaNode++;
    direct.server.http.on('request', countDirect);
    viaNode.server.http.on('request', countNode);
    try {
      const bytes = [post(rowJson([1, 2, 3, 4])), Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')];
      await exchange(direct.port, bytes);
      await exchange(viaNode.port, bytes);
      expect(seen).toEqual({ direct: 1, viaNode: 2 });
    } finally {
      direct.server.http.off('request', countDirect);
      viaNode.server.http.off('request', countNode);
    }
  });
});

describe('the direct path under pressure', () => {
  it('a client that pipelines 200 requests before reading gets 200 answers, in order', async () => {
    const rows = Array.from({ length: 200 }, (_, k) => [k, 1, 2, 3]);
    const bytes = Buffer.concat([...rows.map((r) => post(rowJson(r))), post(rowJson([0, 0, 0, 0]), ['Connection: close'])]);
    const got = await exchange(direct.port, [bytes]);
    const bodies = got.split('HTTP/1.1 200 OK').slice(1).map((r) => JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4)) as { outputs: number[][] });
    expect(bodies).toHaveLength(201);
    for (const [k, r] of rows.entries()) {
      expect(Float32Array.from(bodies[k].outputs[0])).toEqual(net.predict(new Float32Array(r)));
    }
  });

  it('counts every request once: answered, 400, and aborted by a client that left', async () => {
    const gated = gatedModel(net);
    const { server, port } = await start({ models: { demo: gated }, inlineMacs: 0 });
    const metric = (name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(server.metricsText())?.[1] ?? 0);
    const first = exchange(port, [post(rowJson([1, 2, 3, 4]), ['Connection: close'])]);
    await until('the first call', () => gated.calls.length === 1);
    const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.concat([post(rowJson([1, 1, 1, 1])), post(rowJson([2, 2, 2, 2]))])));
    socket.on('error', () => {});
    await until('two queued', () => metric('mlpkit_queue_depth{model="demo"}') === 2);
    expect(metric('mlpkit_requests_in_flight')).toBe(3);
    socket.destroy();
    await until('both aborted', () => metric('mlpkit_requests_total{model="demo",status="aborted"}') === 2);
    expect(metric('mlpkit_queue_depth{model="demo"}')).toBe(0);
    gated.release();
    expect(await first).toMatch(/^HTTP\/1\.1 200 OK/);
    await until('the answer counted', () => metric('mlpkit_requests_total{model="demo",status="200"}') === 1);
    await exchange(port, [post('{"inputs": [[1]]}', ['Connection: close'])]);
    expect(metric('mlpkit_requests_total{model="demo",status="400"}')).toBe(1);
    expect(metric('mlpkit_requests_in_flight')).toBe(0);
  });

  it('a client that pipelines past what is read, then leaves: every request counted, once, on both paths', async () => {
    // Answers of 4096 values (~80 KB) fill the socket's buffers, so the direct path stops reading
    // at MAX_PIPELINED with requests received and not yet parsed; those count as aborted too.
    const wide = new Mlp({ inputs: 4, layers: [{ units: 4096 }], seed: 6 }, { backend: 'reference' });
    const sent = 200;
    for (const directHttp of [true, false]) {
      for (const leave of ['destroy', 'end'] as const) {
        const { server, port } = await start({ models: { demo: wide }, directHttp });
        const counted = () => [...server.metricsText().matchAll(/^mlpkit_requests_total\{model="demo",status="(\w+)"\} (\d+)$/gm)]
          .reduce((sum, m) => sum + Number(m[2]), 0);
        const aborted = () => Number(/^mlpkit_requests_total\{model="demo",status="aborted"\} (\d+)$/m.exec(server.metricsText())?.[1] ?? 0);
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((resolve) => socket.on('connect', resolve));
        socket.pause();
        socket.write(post(rowJson([1, 2, 3, 4])).toString('latin1').repeat(sent), 'latin1');
        await until('the server stops sending', () => server.metricsText().includes('status="200"'));
        await new Promise((r) => setTimeout(r, 100));
        if (leave === 'destroy') socket.destroy();
        else socket.end();
        // node:http leaves unanswered requests uncounted after a FIN; the direct path counts them.
        if (leave === 'end' && !directHttp) continue;
        await until(`${sent} counted (${directHttp ? 'direct' : 'node:http'}, ${leave})`, () => counted() === sent);
        expect(aborted()).toBeGreaterThan(0);
        await new Promise((r) => setTimeout(r, 50));
        expect(counted()).toBe(sent);
      }
    }
    wide.dispose();
  });

  it('64 queued and more unread, then the client leaves: the same bytes and demo counts as node:http', async () => {
    // The model holds every call, so 64 requests queue and the direct path stops reading; what
    // follows them is still unparsed when the client goes.
    const p = post(rowJson([1, 2, 3, 4])).toString('latin1');
    const cases: { name: string; payload: string; leave: 'destroy' | 'fin' }[] = [
      { name: 'Connection: close among the unread', payload: p.repeat(64) + post(rowJson([1, 2, 3, 4]), ['Connection: close']).toString('latin1') + p.repeat(5), leave: 'destroy' },
      { name: 'two complete unread, then FIN', payload: p.repeat(66), leave: 'fin' },
      { name: 'a complete request for node:http, then FIN', payload: `${p.repeat(64)}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`, leave: 'fin' },
      { name: 'a half-sent request, then FIN', payload: p.repeat(65) + p.slice(0, 60), leave: 'fin' },
    ];
    const run = async (directHttp: boolean, c: (typeof cases)[number]) => {
      const gated = gatedModel(net);
      const { server, port } = await start({ models: { demo: gated }, directHttp, inlineMacs: 0 });
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      const got: Buffer[] = [];
      socket.on('data', (d) => got.push(d));
      await new Promise((resolve) => socket.on('connect', resolve));
      if (c.leave === 'fin') socket.end(c.payload, 'latin1');
      else socket.write(c.payload, 'latin1');
      await until('the first call', () => gated.calls.length === 1);
      await new Promise((r) => setTimeout(r, 100));
      if (c.leave === 'destroy') socket.destroy();
      await new Promise((r) => setTimeout(r, 50));
      gated.release();
      await until('nothing in flight', () => /mlpkit_requests_in_flight 0/.test(server.metricsText()));
      await new Promise((r) => setTimeout(r, 100));
      const demo = Object.fromEntries([...server.metricsText().matchAll(/^mlpkit_requests_total\{model="demo",status="(\w+)"\} (\d+)$/gm)]
        .map((m) => [m[1], Number(m[2])]));
      socket.destroy();
      return { written: withoutDate(Buffer.concat(got).toString('latin1')), demo };
    };
    for (const c of cases) {
      const mine = await run(true, c);
      expect({ case: c.name, ...mine }).toEqual({ case: c.name, ...(await run(false, c)) });
    }
  });

  it('close(): an idle direct connection closes at once; a queued request is answered with Connection: close', async () => {
    const { server, port } = await start();
    const idle = connect(port, '127.0.0.1');
    idle.on('error', () => {});
    const idleClosed = new Promise((r) => idle.on('close', r));
    await new Promise((r) => idle.on('connect', r));
    // One answered request makes it a direct-path connection, idle again.
    idle.write(post(rowJson([1, 2, 3, 4])));
    await new Promise((r) => idle.once('data', r));
    // A request still arriving when close() begins (its last byte comes after).
    const bytes = post(rowJson([5, 6, 7, 8]));
    const busy = new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write(bytes.subarray(0, bytes.length - 1)));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('close', () => resolve(got));
      s.on('error', () => {});
      setTimeout(() => s.write(bytes.subarray(bytes.length - 1)), 200);
    });
    await until('the second connection', () => /mlpkit_buffered_body_bytes [1-9]/.test(server.metricsText()));
    const closed = server.close({ graceMs: 5000 });
    await idleClosed;
    const answer = await busy;
    // (node:http's order when the handler sets Connection, as http.ts does while draining)
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\nDate: [^\r]+\r\n\r\n\{"outputs"/);
    await closed;
  });
});

/** A model whose predictAsync answers after `ms`. */
function slowModel(ms: number) {
  return {
    inputs: net.inputs,
    outputs: net.outputs,
    predict: (x: Float32Array) => net.predict(x),
    predictAsync: async (x: Float32Array) => {
      await new Promise((r) => setTimeout(r, ms));
      return net.predict(x);
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the direct path keeps node:http\'s limits (review findings)', () => {
  it('requests waiting behind a slow answer are not timed out (a split request, then a handed-off one, then 40 pipelined)', async () => {
    const { server, port } = await start({ models: { demo: slowModel(400) }, inlineMacs: 0, headersTimeoutMs: 100, requestTimeoutMs: 200 });
    await sleep(150); // the server has been up longer than its headers timeout
    const first = post(rowJson([1, 2, 3, 4]));
    const rest = Buffer.concat([Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), post(rowJson([1, 1, 1, 1]), ['Connection: close'])]);
    const a = await exchange(port, [first.subarray(0, 20), first.subarray(20), rest]);
    expect(a.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(3);
    const many = Buffer.concat([...Array.from({ length: 40 }, (_, k) => post(rowJson([k, 0, 0, 0]))), post(rowJson([0, 0, 0, 0]), ['Connection: close'])]);
    const b = await exchange(port, [many.subarray(0, 7), many.subarray(7)]);
    expect(b.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(41);
    expect(server.metricsText()).not.toMatch(/status="408"/);
  });

  it('a Connection: close answer closes the socket, with bytes after it or not, and the client still open', async () => {
    const { server, port } = await start();
    const open = () => new Promise<number>((r) => server.http.getConnections((_, n) => r(n)));
    for (const trailing of ['', 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n']) {
      // Half open: this side does not end when the server's FIN comes (node's sockets do by default).
      const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      socket.on('error', () => {});
      let got = '';
      socket.on('data', (d) => (got += d.toString()));
      const ended = new Promise((r) => socket.on('end', r));
      socket.on('connect', () => socket.write(Buffer.concat([post(rowJson([1, 2, 3, 4]), ['Connection: close']), Buffer.from(trailing)])));
      await ended; // the server's FIN, while this side has not ended
      expect(got).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*Connection: close/);
      expect(got.match(/HTTP\/1\.1/g)).toHaveLength(1);
      await until('the server closed its side', async () => (await open()) === 0);
      socket.destroy();
    }
  });

  it('bodies arriving on many connections are held to maxBufferedBodyBytes as they arrive (503 past it)', async () => {
    const LIMIT = 10_000;
    const { server, port } = await start({ maxBodyBytes: LIMIT, maxBufferedBodyBytes: LIMIT });
    const sockets = [];
    const answers: string[] = [];
    for (let k = 0; k < 6; k++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      answers[k] = '';
      s.on('data', (d) => (answers[k] += d.toString()));
      await new Promise((r) => s.on('connect', r));
      s.write(`POST /v1/models/demo/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${LIMIT}\r\n\r\n`);
      sockets.push(s);
    }
    await until('the heads read', () => /mlpkit_buffered_body_bytes 0/.test(server.metricsText()));
    for (const s of sockets) s.write(' '.repeat(LIMIT - 10));
    await until('five refused', () => answers.filter((a) => /^HTTP\/1\.1 503 /.test(a)).length === 5);
    expect(Number(/mlpkit_buffered_body_bytes (\d+)/.exec(server.metricsText())![1])).toBeLessThanOrEqual(LIMIT);
    for (const s of sockets) s.destroy();
    await until('the budget back to 0', () => /mlpkit_buffered_body_bytes 0\n/.test(server.metricsText()));
  });

  it('a connection that sends nothing gets 408 after headersTimeoutMs; a request cut by FIN gets 400', async () => {
    const { server, port } = await start({ headersTimeoutMs: 200, requestTimeoutMs: 400, keepAliveTimeoutMs: 30_000 });
    expect(await exchange(port, [])).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    const bytes = post(rowJson([1, 2, 3, 4]));
    // Cut in the head (counted without a model, as node counts it) and in the body (under it).
    for (const at of [60, bytes.length - 5]) {
      const cut = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.end(bytes.subarray(0, at)));
        let got = '';
        s.on('data', (d) => (got += d.toString()));
        s.on('close', () => resolve(got));
        s.on('error', () => {});
      });
      expect(cut).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*"bad_http"/);
    }
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="408"\} 1\n/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="400"\} 1\n/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="demo",status="400"\} 1\n/);
  });
});

describe('the direct path keeps node:http\'s limits (second review)', () => {
  it('a short write stall (under the socket\'s high-water mark) ends once the client reads: a later slow request is answered', async () => {
    const OUT = 200; // ~3.6 KB answers
    let slowMs = 0;
    const model = {
      inputs: 4,
      outputs: OUT,
      predict: (x: Float32Array) => new Float32Array((x.length / 4) * OUT).map((_, i) => i / 7),
      async predictAsync(x: Float32Array) {
        if (slowMs) await sleep(slowMs);
        return this.predict(x);
      },
    };
    const { server, port } = await start({ models: { demo: model }, inlineMacs: 0, writeTimeoutMs: 300 });
    let serverSide: import('node:net').Socket | undefined;
    server.http.on('connection', (s) => (serverSide = s));
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.pause();
    let closed = false;
    s.on('close', () => (closed = true));
    await new Promise((r) => s.on('connect', r));
    // Requests, unread, until the server holds bytes the kernel would not take.
    for (let n = 0; n < 5000 && !(serverSide && serverSide.writableLength > 0); n++) {
      s.write(post(rowJson([1, 2, 3, 4])));
      await sleep(2);
    }
    expect(serverSide!.writableLength).toBeGreaterThan(0);
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.resume();
    await until('all read', () => serverSide!.writableLength === 0);
    await sleep(100);
    slowMs = 700; // longer than writeTimeoutMs: only a stall still being watched would cut it
    got = '';
    s.write(post(rowJson([1, 2, 3, 4])));
    await until('the slow answer or a close', () => closed || /\r\n\r\n\{/.test(got));
    expect(closed).toBe(false);
    expect(got).toMatch(/^HTTP\/1\.1 200 OK/);
    s.destroy();
  });

  it('a silent fresh connection gets its 408 even when the keep-alive timeout is shorter than the headers timeout', async () => {
    // (node keeps an idle connection 1 s past keepAliveTimeoutMs: 1.1 s here, before the 1.5 s headers timeout)
    const { server, port } = await start({ headersTimeoutMs: 1500, requestTimeoutMs: 1500, keepAliveTimeoutMs: 100 });
    expect(await exchange(port, [])).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(server.metricsText()).toMatch(/mlpkit_requests_total\{model="",status="408"\} 1\n/);
  });

  it('behind an answer still owed, a request cut by FIN or timed out: the answer comes with Connection: close, as from node:http', async () => {
    const servers2 = [await start({ models: { demo: slowModel(300) }, inlineMacs: 0, headersTimeoutMs: 100, requestTimeoutMs: 150 }),
      await start({ models: { demo: slowModel(300) }, inlineMacs: 0, headersTimeoutMs: 100, requestTimeoutMs: 150, directHttp: false })];
    const first = post(rowJson([1, 2, 3, 4]));
    const second = post(rowJson([4, 3, 2, 1]));
    const answers = [];
    for (const { port } of servers2) {
      // Cut by FIN: the second request's body is not all there when the client ends.
      const fin = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.end(Buffer.concat([first, second.subarray(0, second.length - 3)])));
        let got = '';
        s.on('data', (d) => (got += d.toString()));
        s.on('close', () => resolve(got));
        s.on('error', () => {});
      });
      // Timed out: the second request's head never completes.
      const late = await exchange(port, [Buffer.concat([first, second.subarray(0, 30)])], 3000);
      answers.push([withoutDate(fin), withoutDate(late)]);
    }
    expect(answers[0][0]).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\n\{"outputs"[^}]*\}$/);
    expect(answers[0][1]).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\n\{"outputs"[^}]*\}$/);
    expect(answers[0]).toEqual(answers[1]);
    for (const [k, { server }] of servers2.entries()) {
      expect(server.metricsText(), k === 0 ? 'direct' : 'node:http').toMatch(/mlpkit_requests_total\{model="",status="400"\} 1\n/);
      expect(server.metricsText(), k === 0 ? "direct" : "node:http").toMatch(/mlpkit_requests_total\{model="",status="408"\} 1\n/);
    }
  });
});
