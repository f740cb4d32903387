import { cudaInfo, nativeAvailable, nativeLoadError, selectBackend, selectModelBackend } from './backend/index.js';
import type { CudaInfo } from './backend/cuda.js';
import type { BackendName } from './backend/types.js';
import { expectInteger } from './validate.js';
import { VERSION } from './version.js';

export interface Info {
  version: string;
  /** The backend a new model gets by default (MLPKIT_BACKEND, else cuda with a usable GPU, else native when it loads). */
  backend: BackendName;
  /** Instruction set of the kernels in use ('js' for the reference, the GPU's 'sm_90' for cuda). */
  isa: string;
  threads: number;
  /** The CUDA devices this process can use, or the reason it can use none. */
  cuda: CudaInfo;
  /** Whether the native addon loads, and why not when it does not. */
  native: { available: boolean; error?: string; isa?: string; isas?: string[]; compiler?: string };
  node: string;
  platform: string;
  arch: string;
}

export function info(): Info {
  // MLPKIT_BACKEND=cuda without a usable GPU makes new models throw; info() still answers. It
  // reports a reference fallback itself (native.error), so it does not also warn about it.
  let backend;
  try {
    backend = selectModelBackend('auto', { warn: false });
  } catch {
    backend = selectBackend('auto', { warn: false });
  }
  const details = backend.info();
  const available = nativeAvailable();
  const native: Info['native'] = { available };
  if (!available) native.error = nativeLoadError()?.message;
  else {
    const n = selectBackend('native').info();
    native.isa = n.isa;
    if (n.isas) native.isas = n.isas;
    if (n.compiler) native.compiler = n.compiler;
  }
  return {
    version: VERSION,
    backend: backend.name,
    isa: details.isa,
    threads: backend.name === 'cuda' && available ? selectBackend('native').info().threads : details.threads,
    cuda: cudaInfo(),
    native,
    node: process.versions.node,
    platform: process.platform,
    arch: process.arch,
  };
}

/**
 * Threads one native call may use (predict on large batches, training), for the whole process.
 * Defaults to the number of cores, or MLPKIT_THREADS. Results do not depend on it: work is split
 * at fixed boundaries and summed in a fixed order.
 */
export function setThreads(n: number): void {
  const threads = expectInteger('n', n, 1, 256);
  if (nativeAvailable()) selectBackend('native').setThreads(threads);
}
