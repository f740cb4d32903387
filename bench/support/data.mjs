// Deterministic inputs for the benchmarks, so every backend sees the same numbers in every run.

/** n floats in [-1, 1) from a 32-bit LCG (the generator bench/run.mjs used). */
export function randomFloats(n, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** n class labels in [0, classes). */
export function randomLabels(n, classes, seed) {
  const u = randomFloats(n, seed);
  return Int32Array.from(u, (v) => Math.min(classes - 1, Math.floor(((v + 1) / 2) * classes)));
}

/** Labels as a batch x classes one-hot matrix (what tfjs' softmaxCrossEntropy takes). */
export function oneHot(labels, classes) {
  const out = new Float32Array(labels.length * classes);
  labels.forEach((c, i) => {
    out[i * classes + c] = 1;
  });
  return out;
}
