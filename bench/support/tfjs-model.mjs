// The same MLP in @tensorflow/tfjs on its WebAssembly backend (XNNPACK kernels), with mlpkit's
// weights copied in, for predict and for an Adam training step.
//
// Threads: in Node tfjs-backend-wasm always runs its single-threaded SIMD build. Its flag
// WASM_HAS_MULTITHREAD_SUPPORT is hard-wired to false under Node (tfjs issue 3830), and forcing
// it true makes start-up fail: the pthread workers are created from blob: URLs, which Node's
// worker_threads refuse (ERR_WORKER_PATH). loadTfjsWasm reports what it got.
//
// No setWasmPaths is needed in Node: the package's Node bundle locates its .wasm files next to
// itself and reads them from disk.

const ACTIVATIONS = { none: 'linear', relu: 'relu', sigmoid: 'sigmoid', tanh: 'tanh' };

/** -> { tf, version, threads, simd }; throws with the reason when the wasm backend cannot start. */
export async function loadTfjsWasm() {
  const tfModule = await import('@tensorflow/tfjs');
  const wasm = await import('@tensorflow/tfjs-backend-wasm'); // registers the 'wasm' backend
  const tf = tfModule.default ?? tfModule;
  // setBackend resolves false (after logging) rather than throwing when initialisation fails.
  if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") could not initialise the wasm backend (tfjs printed why on stderr)');
  await tf.ready();
  if (tf.getBackend() !== 'wasm') throw new Error(`tfjs runs on '${tf.getBackend()}', not wasm`);
  return {
    tf,
    version: tf.version.tfjs,
    threads: wasm.getThreadsCount(),
    simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')),
  };
}

/** [out, in] row-major (torch / mlpkit) -> [in, out] row-major (tfjs Dense kernel). */
function transpose(weight, outputs, inputs) {
  const t = new Float32Array(weight.length);
  for (let o = 0; o < outputs; o++) {
    for (let i = 0; i < inputs; i++) t[i * outputs + o] = weight[o * inputs + i];
  }
  return t;
}

/** A tf.Sequential of Dense layers holding `layers` (net.getLayers()) with spec's activations. */
export function tfjsMlp(tf, spec, layers) {
  if (spec.encoding && spec.encoding.type !== 'identity') {
    throw new Error(`tfjsMlp: input encoding '${spec.encoding.type}' is not reproduced`);
  }
  const model = tf.sequential();
  layers.forEach((layer, i) => {
    const activation = ACTIVATIONS[spec.layers[i].activation];
    if (!activation) throw new Error(`tfjsMlp: activation '${spec.layers[i].activation}' has no tfjs counterpart here`);
    model.add(
      tf.layers.dense({
        units: layer.outputs,
        activation,
        useBias: layer.bias !== null,
        ...(i === 0 ? { inputShape: [layer.inputs] } : {}),
      }),
    );
  });
  const values = layers.flatMap((l) => [
    tf.tensor2d(transpose(l.weight, l.outputs, l.inputs), [l.inputs, l.outputs]),
    ...(l.bias ? [tf.tensor1d(l.bias)] : []),
  ]);
  model.setWeights(values); // copies into the layers' variables
  tf.dispose(values);
  return model;
}

/**
 * An Adam step on `model`: step(xTensor, targetTensor) -> loss (number, after the update ran).
 *   loss: 'mse' (target batch x outputs) | 'softmax-cross-entropy' (target one-hot batch x classes)
 * Adam as torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8 (tfjs' default eps is 1e-7).
 * Both losses reduce by the mean, as mlpkit's do (tfjs' SUM_BY_NONZERO_WEIGHTS without weights
 * is the mean over elements for MSE and over the batch for cross-entropy).
 */
export function tfjsTrainer(tf, model, loss, lr = 1e-3) {
  const optimizer = tf.train.adam(lr, 0.9, 0.999, 1e-8);
  const lossOf =
    loss === 'mse'
      ? (target, pred) => tf.losses.meanSquaredError(target, pred)
      : loss === 'softmax-cross-entropy'
        ? (target, logits) => tf.losses.softmaxCrossEntropy(target, logits)
        : null;
  if (!lossOf) throw new Error(`tfjsTrainer: loss '${loss}' is not set up`);
  // Only this model's variables: other models alive in the same process must not be touched.
  const variables = model.trainableWeights.map((w) => w.read());
  return {
    step(x, target) {
      const value = optimizer.minimize(() => lossOf(target, model.apply(x, { training: true })), true, variables);
      const result = value.dataSync()[0]; // reading the loss back waits for the whole step
      value.dispose();
      return result;
    },
    dispose() {
      optimizer.dispose();
    },
  };
}
