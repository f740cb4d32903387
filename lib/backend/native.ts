// Loads the C++ addon through node-gyp-build, which looks in build/Release (a local
// cmake-js or node-gyp build) and then in prebuilds/<platform>-<arch>/, or from the file named
// by MLPKIT_ADDON_PATH (e.g. the sanitizer build, build-asan/Release/mlpkit.node). Loading is
// lazy and happens once; a failure is remembered so the reason can be reported by info().

import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFloat32FiniteScan } from '../validate.js';
import { setHugePageOffer } from '../huge-pages.js';
import { setNativeWeightQuantizer, type NativeWeightQuantizer } from '../quant/quantize.js';
import type { QuantLayer } from '../quant/format.js';
import type {
  Backend,
  BackendInfo,
  BackendModel,
  BackendQuantModel,
  BackendSparseModel,
  ModelConfig,
  QuantModelConfig,
  SparseLayer,
  SparseModelConfig,
} from './types.js';

interface Addon {
  // live*: the addon's models not yet freed (disposed or collected), for the leak and lifetime tests.
  info(): {
    version: string; isa: string; threads: number; cuda: boolean; compiler?: string; isas?: string[];
    liveModels: number; liveQuantModels: number; liveSparseModels: number;
  };
  setThreads(n: number): void;
  firstNonFinite(data: Float32Array): number;
  /** Absent from builds before lib/huge-pages.ts. */
  offerHugePages?(array: ArrayBufferView): void;
  quantizeInt8?: NativeWeightQuantizer['quantizeInt8'];
  quantizeInt4?: NativeWeightQuantizer['quantizeInt4'];
  columnAbsMax?: NativeWeightQuantizer['columnAbsMax'];
  gptqFactor?: NativeWeightQuantizer['gptqFactor'];
  gptqRound?: NativeWeightQuantizer['gptqRound'];
  Model: new (config: ModelConfig, params: Float32Array) => BackendModel;
  QuantModel?: new (config: QuantModelConfig, layers: QuantLayer[]) => BackendQuantModel;
  quantMatmul?: (config: QuantModelConfig, layers: QuantLayer[], x: Float32Array, batch: number, out: Float32Array) => void;
  SparseModel?: new (config: SparseModelConfig, layers: SparseLayer[]) => BackendSparseModel;
  /** The server's native socket path (lib/server/socket-path.ts); absent from older builds. */
  createSocketPath?: (options: NativeSocketPathOptions) => NativeSocketPath;
  serveParseHead?: (bytes: Uint8Array, end: number, names: string[]) => [number, number] | null;
  serveReadRows?: (bytes: Uint8Array, width: number) => { x: Float32Array; rows: number; flat: boolean } | null;
  serveAnswer?: (y: Float32Array, rows: number, width: number, flat: boolean, date: string, tail: string) => string;
  serveHttpDate?: (seconds: number) => string;
}

/** What native/addon/socket_path.cpp takes (checked again there). */
export interface NativeSocketPathOptions {
  models: { name: string; model: BackendModel; chunkRows: number; overloadedBody: string }[];
  tail: string;
  retryAfter: string;
  maxBodyBytes: number;
  maxQueueRows: number;
  maxPipelined: number;
  headersTimeoutMs: number;
  keepAliveMs: number;
  checkEveryMs: number;
  budget: Float64Array;
  latencyBuckets: readonly number[];
  batchBuckets: readonly number[];
  onRelease: (id: number, reason: string, unread: Buffer | undefined, unwritten: Buffer | undefined, served: boolean) => void;
  onEnded: (ids: Float64Array) => void;
}

export interface NativeSocketPath {
  adopt(id: number, fd: number): boolean;
  /** The socket was closed in JS: the native side drops the connection. */
  forget(id: number): void;
  /** Per served model: [answered 200, answered 503, then latency, batch rows and batch requests as (sum, count, per-bucket counts)]; counters restart. */
  takeStats(): Float64Array[];
  close(): void;
}

// dist/backend/native.js and lib/backend/native.ts both sit two folders below the package root.
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

let addon: Addon | null = null;
let loadError: Error | null = null;
let tried = false;

export function loadNative(): Addon | null {
  if (tried) return addon;
  tried = true;
  try {
    const require = createRequire(import.meta.url);
    const path = process.env.MLPKIT_ADDON_PATH;
    if (path) {
      addon = require(resolve(path)) as Addon;
    } else {
      const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
      addon = nodeGypBuild(packageRoot) as Addon;
    }
    if (typeof addon?.Model !== 'function') throw new Error('the addon does not export Model');
  } catch (err) {
    addon = null;
    // node-gyp-build's message spans lines ("...\n    loaded from: ..."): one line for warnings.
    const message = (err instanceof Error ? err.message : String(err)).trim().replace(/\s*\n\s*/g, '; ');
    loadError = new Error(message, { cause: err });
  }
  return addon;
}

export function nativeLoadError(): Error | null {
  loadNative();
  return loadError;
}

export function createNativeBackend(mod: Addon): Backend {
  setFloat32FiniteScan((data) => mod.firstNonFinite(data));
  if (mod.offerHugePages) setHugePageOffer(mod.offerHugePages.bind(mod));
  const { quantizeInt8, quantizeInt4, columnAbsMax, gptqFactor, gptqRound } = mod;
  if (quantizeInt8 && quantizeInt4) {
    setNativeWeightQuantizer({
      quantizeInt8: quantizeInt8.bind(mod),
      quantizeInt4: quantizeInt4.bind(mod),
      ...(columnAbsMax && { columnAbsMax: columnAbsMax.bind(mod) }),
      ...(gptqFactor && gptqRound && { gptqFactor: gptqFactor.bind(mod), gptqRound: gptqRound.bind(mod) }),
    });
  }
  const QuantModel = mod.QuantModel;
  const quantMatmul = mod.quantMatmul?.bind(mod);
  const SparseModel = mod.SparseModel;
  return {
    ...(SparseModel && {
      createSparseModel(config: SparseModelConfig, layers: SparseLayer[]): BackendSparseModel {
        return new SparseModel(config, layers);
      },
    }),
    ...(QuantModel && {
      createQuantModel(config: QuantModelConfig, layers: QuantLayer[]): BackendQuantModel {
        return new QuantModel(config, layers);
      },
    }),
    ...(QuantModel && quantMatmul && {
      quantMatmul(config: QuantModelConfig, layers: QuantLayer[], x: Float32Array, batch: number, out: Float32Array): void {
        quantMatmul(config, layers, x, batch, out);
      },
    }),
    name: 'native',
    info(): BackendInfo {
      const i = mod.info();
      return { name: 'native', isa: i.isa, threads: i.threads, compiler: i.compiler, isas: i.isas };
    },
    setThreads(n: number): void {
      mod.setThreads(n);
    },
    createModel(config: ModelConfig, params: Float32Array): BackendModel {
      return new mod.Model(config, params);
    },
  };
}
