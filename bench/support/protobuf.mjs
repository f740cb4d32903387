// The protobuf writers live in lib/io/protobuf.ts (the CLI's `mlpkit bench` exports ONNX too);
// this re-export keeps the benches' imports as they were.
export { bytesField, encode, intField, message, stringField } from '../../dist/io/protobuf.js';
