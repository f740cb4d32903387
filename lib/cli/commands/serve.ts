// `mlpkit serve`: serve model files over HTTP with createServer, in this process or in several
// node:cluster workers that share the port, and shut down gracefully on SIGINT / SIGTERM.

import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKEND_CHOICES, type BackendChoice } from '../../backend/index.js';
import { setThreads } from '../../info.js';
import { sumMetricsTexts } from '../../server/metrics.js';
import { MODEL_NAME, normalizeServerOptions, type ServableModel, type ServerOptions } from '../../server/options.js';
import { createServer } from '../../server/server.js';
import { choiceOption, flag, intOption, numberOption, parseCommand, stringOption, type Command, type Io, type Parsed } from '../args.js';
import { CliError, usageError } from '../errors.js';
import { loadModelFile } from '../model-file.js';
import { turnOffPretenuring } from '../../server/v8-pretenuring.js';

const usage = `Usage: mlpkit serve MODEL... [options]

Serves one or more models (.safetensors files from mlpkit: float, quantised or sparse) over
HTTP/1.1. Concurrent requests for a model are merged into one predict call (micro-batching).

Models
  MODEL                  FILE, or NAME=FILE; the name defaults to the file name without extension
  --name NAME            name of a MODEL, by position: the first --name names the first MODEL,
                         the second the second, and so on
  --backend B            auto (default), native or reference
Network
  --port N               default 8080; 0 picks a free port (printed on start)
  --host H               default 127.0.0.1; 0.0.0.0 to accept connections from other machines
  --workers N            N processes share the port (node:cluster), each with its own models and
                         batching; one that dies is restarted; one per core is a good start
                         (default 1: the server runs in this process; a process manager
                         restarts it)
  --threads N            native threads per process (default: cores / workers)
Batching and limits
  --no-batching          one predict call per request
  --max-batch-rows N     most rows merged into one predict call (default 256)
  --max-wait-us N        how long a queued request may wait for its batch to fill (default 0:
                         merge only what arrives together or while the model is busy)
  --max-queue-rows N     rows that may wait per model; beyond, 503 + Retry-After (default 1024)
  --queue-timeout-ms N   a request queued longer gets 503 (default 10000)
  --max-body-bytes N     larger request bodies get 413 (default 1048576)
  --max-buffered-body-bytes N   bytes of bodies read at once over all connections; a body that
                         would pass it gets 503 + Retry-After (default 67108864, at least
                         --max-body-bytes)
  --retry-after-s N      the Retry-After of 503 answers, in seconds (default 1)
  --headers-timeout-ms N / --request-timeout-ms N   slow clients get 408 (defaults 10000 / 30000)
  --keep-alive-timeout-ms N   idle connections are closed after this (default 5000)
  --write-timeout-ms N        a client that reads none of its response for this long is
                              disconnected (default 30000)
  --inline-macs N        multiply-adds up to which predict runs on the event loop (default 4194304)
  --node-http            read every request through node:http (by default the usual predict
                         request is read straight off the socket: the same answers, more requests
                         per second; see directHttp and nativeHttp in the README)
  --no-native-http       answer the usual predict request in TypeScript rather than in the addon
                         (the same answers; see nativeHttp in the README)

Endpoints
  POST /v1/models/NAME/predict   {"inputs": [[...], ...]} or {"inputs": [...], "shape": [rows, n]},
                                 or application/octet-stream float32 rows; answers JSON
                                 {"outputs": [[...], ...]}, or float32 rows with
                                 Accept: application/octet-stream
  GET /v1/models   GET /healthz   GET /readyz   GET /metrics (Prometheus)

SIGINT / SIGTERM: stop accepting, finish the requests in flight, exit (a second signal cuts them).

Example
  mlpkit serve demo=model.safetensors --port 8080
  curl -s localhost:8080/v1/models/demo/predict -d '{"inputs": [[0.1, 0.2, ...]]}'`;

// GET /metrics with --workers: a scrape reaches one worker, which asks the primary for the sum
// over all of them (each worker alone counts only the requests it answered).
//   worker -> primary  { type: METRICS_ASK, id }         primary -> each worker { type: METRICS_COLLECT, id }
//   worker -> primary  { type: METRICS_PART, id, text }  primary -> asking worker { type: METRICS_SUM, id, text }
const METRICS_ASK = 'mlpkit:metrics-ask';
const METRICS_COLLECT = 'mlpkit:metrics-collect';
const METRICS_PART = 'mlpkit:metrics-part';
const METRICS_SUM = 'mlpkit:metrics-sum';
/** How long the primary waits for the workers' parts (a busy or dying worker is left out). */
const METRICS_COLLECT_MS = 1000;

interface MetricsMessage {
  type?: string;
  id?: number;
  text?: string;
  listening?: string;
}

interface ModelArg {
  name: string;
  path: string;
}

function modelArgs(positionals: string[], names: string[]): ModelArg[] {
  if (names.length > positionals.length) throw usageError(`--name given ${names.length} times for ${positionals.length} model files`);
  const out = positionals.map((p, i) => {
    const eq = p.indexOf('=');
    if (eq > 0 && names[i] === undefined) return { name: p.slice(0, eq), path: p.slice(eq + 1) };
    // Both --name and NAME=FILE: unless a file of that whole name exists, one is a mistake.
    if (eq > 0 && !existsSync(p)) throw usageError(`'${p}' names its model '${p.slice(0, eq)}' and --name names it '${names[i]}'`, 'give one of --name or NAME=FILE');
    return { name: names[i] ?? basename(p, extname(p)), path: p };
  });
  const seen = new Set<string>();
  for (const m of out) {
    if (!MODEL_NAME.test(m.name)) {
      throw usageError(`model name '${m.name}': expected letters, digits, '.', '_' and '-' (it is part of the URL /v1/models/NAME)`,
        'name it with --name or NAME=FILE');
    }
    if (seen.has(m.name)) throw usageError(`two models are named '${m.name}'`, 'name them with --name or NAME=FILE');
    seen.add(m.name);
  }
  return out;
}

function serverOptions(v: Parsed['values']): Omit<ServerOptions, 'models'> {
  checkNoBatchingConflict(v);
  return {
    batching: !flag(v, 'no-batching'),
    maxBatchRows: intOption(v, 'max-batch-rows', 256),
    maxWaitUs: numberOption(v, 'max-wait-us', 0),
    maxQueueRows: intOption(v, 'max-queue-rows', 1024),
    queueTimeoutMs: intOption(v, 'queue-timeout-ms', 10_000),
    maxBodyBytes: intOption(v, 'max-body-bytes', 1 << 20),
    ...(stringOption(v, 'max-buffered-body-bytes') === undefined ? {} : { maxBufferedBodyBytes: intOption(v, 'max-buffered-body-bytes', 64 << 20) }),
    retryAfterSeconds: intOption(v, 'retry-after-s', 1, 0),
    headersTimeoutMs: intOption(v, 'headers-timeout-ms', 10_000),
    requestTimeoutMs: intOption(v, 'request-timeout-ms', 30_000),
    keepAliveTimeoutMs: intOption(v, 'keep-alive-timeout-ms', 5_000),
    writeTimeoutMs: intOption(v, 'write-timeout-ms', 30_000),
    inlineMacs: numberOption(v, 'inline-macs', 4 << 20),
    directHttp: !flag(v, 'node-http'),
    nativeHttp: !flag(v, 'no-native-http'),
  };
}

/** The command-line flag of a createServer option, for errors in the flags' own words. */
function flagOf(key: string): string {
  if (key === 'retryAfterSeconds') return '--retry-after-s';
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * createServer's checks of how the options fit together (a buffered-body limit below the body
 * limit, a request timeout below the headers timeout), run before any model loads or worker
 * starts, and said as command-line mistakes (exit 2) with the flags' names.
 */
function checkServerOptions(options: Omit<ServerOptions, 'models'>): void {
  const stand: ServableModel = { inputs: 1, outputs: 1, predict: (x) => x, predictAsync: async (x) => x };
  try {
    normalizeServerOptions({ ...options, models: { check: stand } });
  } catch (err) {
    if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
    throw usageError(err.message.replace(/options\.(\w+)/g, (_, key: string) => flagOf(key)), 'see mlpkit serve --help');
  }
}

/** --no-batching beside a batching knob: one of the two is a mistake. */
function checkNoBatchingConflict(v: Parsed['values']): void {
  if (!flag(v, 'no-batching')) return;
  for (const knob of ['max-batch-rows', 'max-wait-us']) {
    if (v[knob] !== undefined) throw usageError(`--${knob} applies to micro-batching, which --no-batching turns off`, `drop --no-batching or --${knob}`);
  }
}

/** A listen failure the user can fix, said as such (with what to change). */
function listenError(err: NodeJS.ErrnoException, port: number, host: string): Error {
  if (err?.code === 'EADDRINUSE') return new CliError(`port ${port} on ${host} is in use`, 1, 'choose another --port (--port 0 picks a free one), or stop the server that holds it');
  if (err?.code === 'ENOTFOUND' || err?.code === 'EAI_AGAIN') return new CliError(`cannot listen on ${host}: the name does not resolve (${err.code})`, 1, 'give --host an IP address (127.0.0.1, 0.0.0.0) or a name this machine resolves');
  if (err?.code === 'EADDRNOTAVAIL') return new CliError(`cannot listen on ${host}: not an address of this machine`, 1, '--host 127.0.0.1 for this machine only, 0.0.0.0 for every interface');
  if (err?.code === 'EACCES') return new CliError(`no permission to listen on port ${port}`, 1, 'ports below 1024 need privileges; choose --port 1024 or above');
  return err;
}

/** The mlpkit executable, which workers run whoever called serve (the bin or runCli in a script). */
const CLI_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

/**
 * A port free on `host` now, for --port 0 with several workers. They share one listening socket,
 * which the cluster primary opens when the first worker asks for it and closes when no worker
 * that asked is alive; under --port 0 a worker restarted after that would get a new random port
 * (and the others, if it came first). Asking every worker for the same port keeps the address.
 */
export function pickFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** The command line with `--port port` added where parseArgs takes it as the option's last value (before a `--`). */
export function withPort(args: readonly string[], port: number): string[] {
  const end = args.indexOf('--');
  return end < 0 ? [...args, '--port', String(port)] : [...args.slice(0, end), '--port', String(port), ...args.slice(end)];
}

/**
 * The cluster primary of --workers N: forks the workers (each runs the mlpkit executable with
 * this command's arguments), restarts one that dies, forwards the stop signal.
 */
function runPrimary(workers: number, argv: readonly string[], io: Io): Promise<number> {
  // (Run from the TypeScript sources there is no main.js: a fork would fail in every worker.)
  if (!existsSync(CLI_MAIN)) throw new CliError(`--workers needs the built mlpkit executable, not found at ${CLI_MAIN}`, 1, 'build it with npm run build:ts, or serve with --workers 1');
  cluster.setupPrimary({ exec: CLI_MAIN, args: ['serve', ...argv] });
  return new Promise((resolve) => {
    let stopping = false;
    let exitCode = 0;
    let reported = false;
    const listening = new Set<number>(); // worker ids that have listened
    // (Node may emit a worker's 'exit' before removing it from cluster.workers.)
    const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
    let finished = false;
    const done = () => {
      // (Two workers dead by the time the first 'exit' event comes both find none alive.)
      if (finished) return;
      finished = true;
      resolve(exitCode);
    };
    for (let i = 0; i < workers; i++) cluster.fork();
    let nextCollect = 0;
    const collecting = new Map<number, (text: string) => void>();
    const collectMetrics = (asker: Worker, askId: number) => {
      const id = ++nextCollect;
      const targets = alive().filter((w) => listening.has(w.id) && w.isConnected());
      const parts: string[] = [];
      const finish = () => {
        if (!collecting.delete(id)) return;
        clearTimeout(timer);
        if (asker.isConnected()) asker.send({ type: METRICS_SUM, id: askId, text: sumMetricsTexts(parts) });
      };
      const timer = setTimeout(finish, METRICS_COLLECT_MS);
      collecting.set(id, (text) => {
        parts.push(text);
        if (parts.length === targets.length) finish();
      });
      for (const w of targets) w.send({ type: METRICS_COLLECT, id });
      if (targets.length === 0) finish();
    };
    cluster.on('message', (worker, message: MetricsMessage) => {
      if (message?.type === METRICS_ASK && typeof message.id === 'number') return collectMetrics(worker, message.id);
      if (message?.type === METRICS_PART) return void collecting.get(message.id!)?.(String(message.text));
      if (!message?.listening) return;
      listening.add(worker.id);
      failedRestarts = 0;
      // Said once as many workers as asked for listen (all on one address: see pickFreePort).
      if (!reported && alive().filter((w) => listening.has(w.id)).length === workers) {
        reported = true;
        io.stdout.write(`mlpkit serve: ${workers} workers listening on ${message.listening}\n`);
      } else if (reported) {
        io.stderr.write(`mlpkit serve: worker ${worker.process.pid} listening on ${message.listening}\n`);
      }
    });
    // Replacements that fail before they listen wait longer each time (1 s, 2 s, ... 30 s).
    let failedRestarts = 0;
    // Cleared by a stop: a backoff of up to 30 s would otherwise keep the primary alive that long.
    const restarts = new Set<NodeJS.Timeout>();
    const restart = (delayMs: number) => {
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (!stopping) cluster.fork(); // not when a stop came in the meantime
      }, delayMs);
      restarts.add(timer);
    };
    cluster.on('exit', (worker, code, signal) => {
      const served = listening.has(worker.id);
      const serving = alive().filter((w) => listening.has(w.id)).length;
      if (!stopping && !served && (!reported || serving === 0)) {
        // It failed before it served (a model that does not load, a port in use): at the start
        // so would every other, and later with no worker left nothing serves. Its error is on
        // stderr; stop rather than restart it forever (a process manager restarts the command).
        exitCode = 1;
        stop('SIGTERM', `worker ${worker.process.pid} exited (${signal ?? code}) before it listened; stopping`);
      } else if (!stopping && !served) {
        // A replacement that cannot start (its model file gone, say) must not take down the
        // workers still serving: try again later.
        exitCode = 1;
        const delay = Math.min(30_000, 1000 * 2 ** failedRestarts++);
        io.stderr.write(`mlpkit serve: worker ${worker.process.pid} exited (${signal ?? code}) before it listened; ` +
          `${serving} still serving, trying again in ${delay / 1000} s\n`);
        restart(delay);
        return;
      } else if (!stopping) {
        io.stderr.write(`mlpkit serve: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`);
        if (code !== 0) exitCode = 1; // said again by the command's exit code when it stops
        restart(200);
        return;
      }
      if (alive().length === 0) done();
    });
    const stop = (signal: NodeJS.Signals, why = `${signal}: stopping the workers`) => {
      if (stopping) {
        for (const w of alive()) w.process.kill('SIGKILL');
        return;
      }
      stopping = true;
      for (const timer of restarts) clearTimeout(timer);
      restarts.clear();
      io.stderr.write(`mlpkit serve: ${why}\n`);
      const workersLeft = alive();
      for (const w of workersLeft) w.process.kill('SIGTERM');
      if (workersLeft.length === 0) done();
    };
    // (A signal listener is called with the signal's number too: not stop's reason.)
    process.on('SIGINT', (signal) => stop(signal));
    process.on('SIGTERM', (signal) => stop(signal));
  });
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve models over HTTP with micro-batching, metrics and graceful shutdown',
  usage,
  async run(argv, io) {
    const { values, positionals, help } = parseCommand('serve', argv, {
      name: { type: 'string', multiple: true }, backend: { type: 'string' },
      port: { type: 'string', short: 'p' }, host: { type: 'string' }, workers: { type: 'string' }, threads: { type: 'string' },
      'no-batching': { type: 'boolean' }, 'max-batch-rows': { type: 'string' }, 'max-wait-us': { type: 'string' },
      'max-queue-rows': { type: 'string' }, 'queue-timeout-ms': { type: 'string' }, 'max-body-bytes': { type: 'string' },
      'headers-timeout-ms': { type: 'string' }, 'request-timeout-ms': { type: 'string' }, 'keep-alive-timeout-ms': { type: 'string' }, 'write-timeout-ms': { type: 'string' },
      'inline-macs': { type: 'string' }, 'max-buffered-body-bytes': { type: 'string' }, 'retry-after-s': { type: 'string' },
      'node-http': { type: 'boolean' }, 'no-native-http': { type: 'boolean' },
    }, { min: 1, max: Infinity, names: 'one or more MODEL files' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const models = modelArgs(positionals, (values.name as string[] | undefined) ?? []);
    const port = intOption(values, 'port', 8080, 0, 65535);
    const host = stringOption(values, 'host') ?? '127.0.0.1';
    const workers = intOption(values, 'workers', 1, 1, 256);
    const threads = intOption(values, 'threads', Math.max(1, Math.floor(availableParallelism() / workers)), 1, 256);
    const backend = choiceOption<BackendChoice>(values, 'backend', BACKEND_CHOICES, 'auto');
    const options = serverOptions(values);
    checkServerOptions(options);
    if (cluster.isPrimary && workers > 1) {
      const fixed = port !== 0 ? argv : withPort(argv, await pickFreePort(host).catch((err: NodeJS.ErrnoException) => {
        throw listenError(err, port, host);
      }));
      return runPrimary(workers, fixed, io);
    }

    // Before the models load and long before the first request (v8-pretenuring.ts).
    turnOffPretenuring();
    setThreads(threads);
    const loaded: Record<string, ServableModel> = {};
    let server: ReturnType<typeof createServer>;
    let address: Awaited<ReturnType<typeof server.listen>>;
    try {
      for (const m of models) loaded[m.name] = (await loadModelFile(m.path, backend)).model;
      server = createServer({ ...options, models: loaded });
      address = await server.listen(port, host).catch((err: NodeJS.ErrnoException) => {
        server.close({ graceMs: 0 }).catch(() => {});
        throw listenError(err, port, host);
      });
    } catch (err) {
      // A worker's channel to the primary would keep it alive after the error is printed.
      if (cluster.isWorker) cluster.worker?.disconnect();
      throw err;
    }
    const list = models.map((m) => `${m.name} (${loaded[m.name].inputs} -> ${loaded[m.name].outputs})`).join(', ');
    if (cluster.isWorker) {
      let nextAsk = 0;
      const asked = new Map<number, (text: string) => void>();
      process.on('message', (message: MetricsMessage) => {
        if (message?.type === METRICS_COLLECT) process.send?.({ type: METRICS_PART, id: message.id, text: server.metricsText() });
        else if (message?.type === METRICS_SUM) {
          asked.get(message.id!)?.(String(message.text));
          asked.delete(message.id!);
        }
      });
      server.metricsSource = () => new Promise((resolve, reject) => {
        const id = ++nextAsk;
        asked.set(id, resolve);
        // Without an answer (the primary gone), metricsSource's rejection serves this worker's own.
        setTimeout(() => asked.delete(id) && reject(new Error('no metrics from the primary')), 2 * METRICS_COLLECT_MS).unref();
        if (!process.connected) {
          asked.delete(id);
          return reject(new Error('no channel to the primary'));
        }
        process.send?.({ type: METRICS_ASK, id });
      });
      process.send?.({ listening: address.url });
    }
    else io.stdout.write(`mlpkit serve: listening on ${address.url}; models: ${list}\n`);

    await new Promise<void>((resolve) => {
      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        if (++signals > 1) {
          // A worker's second SIGTERM is usually the same stop twice (a signal to the whole
          // process group, then the primary's): the primary cuts a worker with SIGKILL instead.
          if (!cluster.isWorker) server.http.closeAllConnections();
          return;
        }
        if (!cluster.isWorker) io.stderr.write(`mlpkit serve: ${signal}: finishing the requests in flight\n`);
        server.close().then(() => {
          process.removeListener('SIGINT', onInterrupt);
          process.removeListener('SIGTERM', stop);
          resolve();
        });
      };
      // A terminal's Ctrl-C reaches every process of the group: workers leave it to the primary,
      // which stops them with SIGTERM (once; a second Ctrl-C kills them).
      const onInterrupt = (signal: NodeJS.Signals) => {
        if (!cluster.isWorker) stop(signal);
      };
      process.on('SIGINT', onInterrupt);
      process.on('SIGTERM', stop);
    });
    for (const m of Object.values(loaded)) (m as { dispose?: () => void }).dispose?.();
    // A worker's channel to the primary would keep it alive: close it so the process can end.
    if (cluster.isWorker) cluster.worker?.disconnect();
    else io.stderr.write('mlpkit serve: stopped\n');
  },
};
