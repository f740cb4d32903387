// Shared by the server tests: a model that holds its calls until released, and a poll that
// waits for what /metrics (or anything else) shows, with no timing assertions.

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
