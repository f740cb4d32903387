// Loads the optional CUDA addon, mlpkit_cuda.node, by path (never through node-gyp-build, which
// would take any .node file it finds): MLPKIT_CUDA_ADDON when set, else the file `npm run
// build:cuda` writes, build-cuda/cuda/mlpkit_cuda.node, else build/cuda/mlpkit_cuda.node. The
// addon links the CUDA runtime statically and opens the driver only when asked, so it loads on
// any Linux x86-64 machine; its info() then says whether a usable GPU is present. Loading and
// probing happen once, lazily, and the outcome (or the reason) is kept for info().
//
// Nothing here has run on a GPU yet (see docs/CUDA.md).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendInfo, BackendModel, ModelConfig, ModelOptions } from './types.js';
import { PRECISIONS } from './types.js';

export interface CudaDevice {
  index: number;
  name: string;
  /** e.g. '9.0' for an H100 / H200. */
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
  /** Compute capability 8.0 or newer: this build has code for it. */
  supported: boolean;
}

export interface CudaInfo {
  /** True when the CUDA addon loads and reports a usable device: backend 'cuda' works, and 'auto' picks it. */
  available: boolean;
  /** Why not, when not available: the addon is not built, did not load, or found no driver or device. */
  reason?: string;
  /** The addon file, when one was found. */
  addon?: string;
  /** CUDA runtime version compiled in, driver version found (null: no driver), architectures compiled. */
  runtime?: string;
  driver?: string | null;
  architectures?: string;
  devices: CudaDevice[];
}

interface CudaAddonInfo {
  version: string;
  runtime: string;
  driver: string | null;
  architectures: string;
  available: boolean;
  devices: CudaDevice[];
  error?: string;
}

interface CudaAddon {
  info(): CudaAddonInfo;
  Model: new (config: ModelConfig, params: Float32Array, precision: number, device: number) => BackendModel;
}

// dist/backend/cuda.js and lib/backend/cuda.ts both sit two folders below the package root.
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CANDIDATES = ['build-cuda/cuda/mlpkit_cuda.node', 'build/cuda/mlpkit_cuda.node'];

let state: { addon: CudaAddon | null; info: CudaInfo } | null = null;

function probe(): { addon: CudaAddon | null; info: CudaInfo } {
  const explicit = process.env.MLPKIT_CUDA_ADDON;
  const path = explicit ? resolve(explicit) : CANDIDATES.map((c) => resolve(packageRoot, c)).find((c) => existsSync(c));
  if (!path) {
    return {
      addon: null,
      info: {
        available: false,
        reason: `the CUDA addon is not built (no ${CANDIDATES.join(' or ')}; it is built from a checkout of mlpkit with \`npm run build:cuda\` where the CUDA toolkit is installed)`,
        devices: [],
      },
    };
  }
  let addon: CudaAddon;
  let raw: CudaAddonInfo;
  try {
    addon = createRequire(import.meta.url)(path) as CudaAddon;
    if (typeof addon?.Model !== 'function' || typeof addon?.info !== 'function') throw new Error('it does not export Model and info');
    raw = addon.info();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { addon: null, info: { available: false, reason: `the CUDA addon ${path} did not load: ${message}`, addon: path, devices: [] } };
  }
  const info: CudaInfo = {
    available: raw.available,
    addon: path,
    runtime: raw.runtime,
    driver: raw.driver,
    architectures: raw.architectures,
    devices: raw.devices,
  };
  if (!raw.available) info.reason = raw.error ?? 'no usable CUDA device';
  return { addon: raw.available ? addon : null, info };
}

function loaded(): { addon: CudaAddon | null; info: CudaInfo } {
  state ??= probe();
  return state;
}

/** What CUDA this process can use, or why none (loads and probes the addon on first call). */
export function cudaInfo(): CudaInfo {
  const { info } = loaded();
  return { ...info, devices: info.devices.map((d) => ({ ...d })) };
}

let backend: Backend | null = null;

/** The cuda backend, or null when no usable device is present (cudaInfo().reason says why). */
export function cudaBackend(): Backend | null {
  if (backend) return backend;
  const { addon, info } = loaded();
  if (!addon) return null;
  const device = info.devices.find((d) => d.supported) ?? info.devices[0];
  const isa = `sm_${device.computeCapability.replace('.', '')}`;
  backend = {
    name: 'cuda',
    info(): BackendInfo {
      return { name: 'cuda', isa, threads: 1 };
    },
    createModel(config: ModelConfig, params: Float32Array, options: ModelOptions = {}): BackendModel {
      const precision = PRECISIONS.indexOf(options.precision ?? 'fp32');
      return new addon.Model(config, params, precision, device.index);
    },
    setThreads(): void {
      // One stream per model; host threads do not size anything here.
    },
  };
  return backend;
}
