// Shared by the server tests: a model that holds its calls until released, raw HTTP/1.1
// exchanges (requests cut into writes, answers compared Date aside), and a poll that
// waits for what /metrics (or anything else) shows, with no timing assertions.

import { connect } from 'node:net';
import type { Mlp, ServableModel } from '../lib/index.js';

/** A model whose predictAsync waits until release(): requests pile up behind its first call. */
export function gatedModel(net: Mlp): ServableModel & { release(): void; calls: number[] } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const calls: number[] = [];
  return {
    inputs: net.inputs,
    outputs: net.outputs,
    calls,
    release: () => open(),
    predict: (x) => net.predict(x),
    async predictAsync(x) {
      calls.push(x.length / net.inputs);
      await gate;
      return net.predict(x);
    },
  };
}

/** Polls condition every 5 ms, for up to 10 s. */
export async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/**
 * Writes `chunks` to a new connection (a pause between them, so the server reads them apart)
 * and resolves with everything the server sent until it closed the connection.
 */
export function exchange(port: number, chunks: Buffer[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    socket.on('error', () => {});
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    setTimeout(() => socket.destroy(), timeoutMs).unref();
  });
}

/** The Date header's value differs between two servers; its place in the head must not. */
export const withoutDate = (text: string) => text.replace(/\r\nDate: [^\r]*/g, '\r\nDate: -');

/** A predict request with a Content-Length, the given header lines, to `path`. */
export function post(body: string | Buffer, headers: string[] = ['Content-Type: application/json'], path = '/v1/models/demo/predict'): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\n${headers.map((h) => `${h}\r\n`).join('')}Content-Length: ${bytes.length}\r\n\r\n`), bytes]);
}

/** Cuts `bytes` at the given fractions of its length. */
export function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].filter((k) => k > 0 && k < bytes.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const k of at) {
    out.push(bytes.subarray(from, k));
    from = k;
  }
  out.push(bytes.subarray(from));
  return out;
}
