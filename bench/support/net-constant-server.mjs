// The throughput ceiling of bench/serve.mjs's paired rounds: the least an HTTP/1.1 server built on
// Node's sockets (node:net) can do per request. It finds each request's end (the blank line, then
// Content-Length bytes) and writes a fixed answer of the same size as the model server's, with
// no header parsing beyond that, no model, no JSON, no metrics and no timeouts. Not a server to
// use: it is here to measure what node:net's reads and writes and the kernel's loopback TCP cost
// on their own, which bounds every server of the bench, mlpkit's direct path included.
//
//   node bench/support/net-constant-server.mjs --response '{"outputs":[[...]]}'   prints "listening on URL"

import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { response: { type: 'string' }, port: { type: 'string', default: '0' } } });
const body = values.response ?? '{"outputs":[[0]]}';
const answer = (date) => `HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
  `Date: ${date}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n${body}`;
let second = -1;
let text = '';
function current() {
  const now = Date.now();
  if (Math.floor(now / 1000) !== second) {
    second = Math.floor(now / 1000);
    text = answer(new Date(now).toUTCString());
  }
  return text;
}

const LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;

const server = net.createServer({ noDelay: true }, (socket) => {
  let pending = null;
  socket.on('error', () => {});
  socket.on('data', (chunk) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) break;
      const m = LENGTH.exec(buf.toString('latin1', 0, end));
      const total = end + 4 + (m ? Number(m[1]) : 0);
      if (buf.length < total) break;
      socket.write(current());
      buf = buf.subarray(total);
    }
    pending = buf.length > 0 ? buf : null;
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
