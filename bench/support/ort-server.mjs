// The onnxruntime-node server of bench/serve.mjs: the same model and the same request and
// response format as mlpkit's server (the same JSON decoder and encoder, from dist), but one
// session.run per request and no batching: what serving the model with onnxruntime looks like
// without writing a batcher. With --workers N, N such processes share the port (node:cluster),
// as `mlpkit serve --workers N` does.
//
//   node bench/support/ort-server.mjs --model FILE.safetensors [--threads N] [--workers N]   prints "listening on URL"

import cluster from 'node:cluster';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Mlp } from '../../dist/index.js';
import { decodeJson, encodeJson } from '../../dist/server/codec.js';
import { mlpToOnnx } from './onnx-model.mjs';

const { values } = parseArgs({
  options: { model: { type: 'string' }, threads: { type: 'string', default: '1' }, port: { type: 'string', default: '0' }, workers: { type: 'string', default: '1' } },
});
const workers = Number(values.workers);
if (workers > 1 && cluster.isPrimary) {
  let announced = false;
  for (let w = 0; w < workers; w++) cluster.fork();
  cluster.on('message', (_worker, message) => {
    if (message?.listening && !announced) {
      announced = true;
      process.stdout.write(`listening on ${message.listening}\n`);
    }
  });
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  });
} else {
  await serve();
}

async function serve() {
  const mod = await import('onnxruntime-node');
  const ort = mod.default ?? mod;
  const net = Mlp.loadSync(values.model, { backend: 'reference' });
  const session = await ort.InferenceSession.create(mlpToOnnx(net.spec, net.getLayers()), {
    intraOpNumThreads: Number(values.threads), interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'],
  });
  const { inputs, outputs } = net;
  net.dispose();

  function fail(res, status, code, message) {
    const body = JSON.stringify({ error: { code, message } });
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let input;
      try {
        input = decodeJson(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), 'demo', inputs);
      } catch (err) {
        return fail(res, err.status ?? 400, err.code ?? 'bad_request', err.message);
      }
      try {
        const result = await session.run({ x: new ort.Tensor('float32', input.x, [input.rows, inputs]) });
        const body = encodeJson(result.y.data, input.rows, outputs, input.flat);
        res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      } catch (err) {
        fail(res, 500, 'internal', err.message);
      }
    });
  });
  server.keepAliveTimeout = 5000;
  server.listen(Number(values.port), '127.0.0.1', () => {
    const url = `http://127.0.0.1:${server.address().port}`;
    if (cluster.isWorker) process.send({ listening: url });
    else process.stdout.write(`listening on ${url}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
