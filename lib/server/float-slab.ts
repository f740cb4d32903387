// Small Float32Arrays for request rows, carved from shared 64 KiB slabs.
//
// Why: V8 keeps a typed array of up to 64 bytes on its heap, but a larger one gets its own
// malloc'd backing store, which it tracks for the GC: `new Float32Array(32)` costs ~0.6 us here
// against ~0.05 us for a view of an existing ArrayBuffer, and a server allocates one per request.
// (Node's Buffer.allocUnsafe pools small buffers for the same reason.) A slab lives until every
// view of it is collected; with the server's bounded queue that is at most a few slabs.

const SLAB_BYTES = 64 * 1024;
// Larger arrays are rare (many rows in one request) and worth their own allocation.
const MAX_POOLED_BYTES = 4 * 1024;
// Views start on 16-byte boundaries, as malloc would place them.
const ALIGN = 16;

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/** A zeroed Float32Array of n values, carved from a slab when small. */
export function allocFloats(n: number): Float32Array {
  const bytes = n * 4;
  if (bytes > MAX_POOLED_BYTES) return new Float32Array(n);
  if (used + bytes > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const view = new Float32Array(slab, used, n);
  used = (used + bytes + ALIGN - 1) & ~(ALIGN - 1);
  return view;
}
