import { nativeAvailable, nativeLoadError, selectBackend } from './backend/index.js';
import { VERSION } from './version.js';

export interface Info {
  version: string;
  /** The backend a new model gets by default (MLPKIT_BACKEND, else native when it loads). */
  backend: 'native' | 'reference';
  /** Instruction set of the kernels in use ('js' for the reference). */
  isa: string;
  threads: number;
  cuda: boolean;
  /** Whether the native addon loads, and why not when it does not. */
  native: { available: boolean; error?: string; isa?: string; compiler?: string };
  node: string;
  platform: string;
  arch: string;
}

export function info(): Info {
  const backend = selectBackend('auto');
  const details = backend.info();
  const available = nativeAvailable();
  const native: Info['native'] = { available };
  if (!available) native.error = nativeLoadError()?.message;
  else {
    const n = selectBackend('native').info();
    native.isa = n.isa;
    if (n.compiler) native.compiler = n.compiler;
  }
  return {
    version: VERSION,
    backend: backend.name,
    isa: details.isa,
    threads: details.threads,
    cuda: details.cuda,
    native,
    node: process.versions.node,
    platform: process.platform,
    arch: process.arch,
  };
}
