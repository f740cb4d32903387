// The server's budget of request-body bytes read at once (maxBufferedBodyBytes): bodies are
// buffered whole before decoding, so without it memory under many slow uploads grows with the
// connection count. No timing assertions: the tests wait for what /metrics shows.

import { connect, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, createServer, type ModelServer } from '../lib/index.js';
import { backendsUnderTest } from './helpers.js';
import { until } from './server-support.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'reference';
const net = new Mlp({ inputs: 4, layers: [{ units: 3 }], seed: 2 }, { backend });
const servers: ModelServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ graceMs: 100 })));
});

/** A valid JSON body of exactly `bytes` bytes (one row, padded with spaces). */
const body = (bytes: number) => '{"inputs":[[1,2,3,4]]}'.padEnd(bytes, ' ');

const buffered = (server: ModelServer) => {
  const line = server.metricsText().split('\n').find((l) => l.startsWith('mlpkit_buffered_body_bytes '));
  return Number(line?.split(' ')[1]);
};

/** A request whose body is sent in part now; `rest()` sends the remainder, `reply` is what came back. */
function partial(port: number, text: string, sendNow: number): { socket: Socket; rest(): void; reply: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  let got = '';
  const reply = new Promise<string>((resolve) => {
    socket.on('data', (d) => {
      got += d.toString();
      if (/\r\n\r\n[\s\S]*\}/.test(got)) resolve(got);
    });
    socket.on('close', () => resolve(got));
    socket.on('error', () => resolve(got));
  });
  socket.write(`POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n`);
  socket.write(text.slice(0, sendNow));
  return { socket, rest: () => socket.write(text.slice(sendNow)), reply };
}

describe('request bodies share a byte budget', () => {
  it('a body that would pass it gets 503 with Retry-After; finished or abandoned bodies give their bytes back', async () => {
    const server = createServer({ models: { m: net }, maxBodyBytes: 1000, maxBufferedBodyBytes: 2000, retryAfterSeconds: 3 });
    servers.push(server);
    const { url, port } = await server.listen(0);
    const post = (text: string) => fetch(`${url}/v1/models/m/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });

    const a = partial(port, body(900), 800);
    const b = partial(port, body(900), 800);
    await until('1600 bytes buffered', () => buffered(server) === 1600);

    // 1600 + 500 > 2000: refused before its body is read.
    const refused = await post(body(500));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('3');
    expect((await refused.json()).error.code).toBe('overloaded');
    // 1600 + 300 fits.
    expect((await post(body(300))).status).toBe(200);

    a.rest();
    b.rest();
    for (const r of [a, b]) expect(await r.reply).toMatch(/^HTTP\/1\.1 200[\s\S]*"outputs"/);
    await until('the finished bodies released', () => buffered(server) === 0);
    expect((await post(body(1000))).status).toBe(200);

    // A client gone mid-body gives its bytes back.
    const gone = partial(port, body(900), 700);
    await until('700 bytes buffered', () => buffered(server) === 700);
    gone.socket.destroy();
    await until('the abandoned body released', () => buffered(server) === 0);
    for (const r of [a, b]) r.socket.destroy();
  });

  it('a chunked body is cut off with 503 when it passes the budget, and the connection still gets its answer', async () => {
    const server = createServer({ models: { m: net }, maxBodyBytes: 1000, maxBufferedBodyBytes: 1000 });
    servers.push(server);
    const { port } = await server.listen(0);
    const hold = partial(port, body(900), 800);
    await until('800 bytes buffered', () => buffered(server) === 800);
    const chunk = 'x'.repeat(300);
    const socket = connect(port, '127.0.0.1');
    const reply = new Promise<string>((resolve) => {
      let got = '';
      socket.on('data', (d) => {
        got += d.toString();
        if (got.includes('}')) resolve(got);
      });
      socket.on('close', () => resolve(got));
    });
    socket.write('POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    expect(await reply).toMatch(/^HTTP\/1\.1 503[\s\S]*Retry-After: 1[\s\S]*"overloaded"/i);
    socket.destroy();
    hold.socket.destroy();
    await until('released', () => buffered(server) === 0);
  });

  it('maxBufferedBodyBytes below maxBodyBytes is refused: a body of the largest size must fit', () => {
    expect(() => createServer({ models: { m: net }, maxBodyBytes: 1000, maxBufferedBodyBytes: 999 })).toThrow(/maxBufferedBodyBytes \(999\) >= options.maxBodyBytes \(1000\)/);
    const large = createServer({ models: { m: net }, maxBodyBytes: 100 << 20 });
    servers.push(large);
    expect(large.options.maxBufferedBodyBytes).toBe(100 << 20);
  });
});
