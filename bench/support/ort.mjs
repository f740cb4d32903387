// onnxruntime-node for the benches' peer columns: the module, or why it did not load (it is a
// devDependency, and a bench still runs without it), and the session options they all use.

/** { ort, reason }: the module, or null and why. */
export async function loadOrt() {
  try {
    const mod = await import('onnxruntime-node');
    return { ort: mod.default ?? mod, reason: '' };
  } catch (err) {
    return { ort: null, reason: `onnxruntime-node did not load: ${err instanceof Error ? err.message : err}` };
  }
}

/** CPU execution, `threads` intra-op threads, one inter-op thread, every graph optimisation. */
export function ortSessionOptions(threads) {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'] };
}
