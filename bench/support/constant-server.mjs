// The latency baseline of bench/serve.mjs: a bare node:http server that reads the request body
// and answers a fixed JSON body of the same size as the model server's answer, with no parsing
// and no model. Whatever mlpkit's server adds on top of this is the cost of serving a model.
//
//   node bench/support/constant-server.mjs --response '{"outputs":[[...]]}'   prints "listening on URL"

import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { response: { type: 'string' }, port: { type: 'string', default: '0' } } });
const body = Buffer.from(values.response ?? '{"outputs":[[0]]}');

const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 5000;
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
