// Large typed arrays that JavaScript allocates and then writes whole: a model file read into
// memory, the copy it is decoded into, a model's parameters, a file about to be saved. A fresh
// ArrayBuffer of that size is untouched zero pages, and its first write takes one page fault per
// 4 KB; on a 2-core cloud VM that is ~10 us each, 0.7-0.95 s for 269 MB against 15 ms for the
// same write again. The native backend installs an offer of such arrays to transparent huge
// pages (madvise, Linux; one fault per 2 MB). Arrays the addon's kernels fill (predict's
// outputs) it offers itself (OutputArg, addon/checks.h), so they do not come here as well.
// Contents are unchanged; without the addon, or off Linux, this does nothing.

const MIN_BYTES = 4 << 20;

let offer: ((array: ArrayBufferView) => void) | null = null;
// Loads the addon (which installs the offer) the first time a large array is offered: a model
// file is read before any backend is chosen. Set by lib/backend/index.ts; used once.
let loader: (() => void) | null = null;

export function setHugePageOffer(fn: ((array: ArrayBufferView) => void) | null): void {
  offer = fn;
}

export function setHugePageLoader(fn: (() => void) | null): void {
  loader = fn;
}

/** Returns the array, offered to huge pages when it is large: call it before the first write. */
export function offerHugePages<T extends ArrayBufferView>(array: T): T {
  if (array.byteLength < MIN_BYTES) return array;
  if (offer === null && loader !== null) {
    const load = loader;
    loader = null;
    load();
  }
  offer?.(array);
  return array;
}
