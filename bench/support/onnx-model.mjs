// The ONNX exporter lives in lib/io/onnx.ts (the CLI's `mlpkit bench` uses it too); this
// re-export keeps the benches' imports as they were.
export { mlpToOnnx } from '../../dist/io/onnx.js';
