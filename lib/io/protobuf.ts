// The few protobuf wire-format writers the ONNX exporter needs (onnx.ts). A message is built as
// an array of already-encoded fields and concatenated once, so nested messages are plain values:
// message(field(...), field(...)) -> Uint8Array.
//
// Only what ONNX's ModelProto uses here: varints (int32/int64/enum), length-delimited fields
// (strings, bytes, nested messages). JS numbers carry integers exactly up to 2^53, far above
// any dimension or version written here, so no BigInt path.

const textEncoder = new TextEncoder();

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;

type Part = Uint8Array | undefined | Part[];

/** Base-128 varint of a non-negative integer (negative int64s would need 10 bytes; none occur). */
function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`protobuf varint: expected a non-negative safe integer, got ${value}`);
  }
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80); // % and / rather than bit ops: values may exceed 2^31
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

function tag(fieldNumber: number, wireType: number): Uint8Array {
  return varint(fieldNumber * 8 + wireType);
}

/** Concatenate encoded pieces (fields, arrays of fields, or undefined for an absent optional field). */
export function message(...parts: Part[]): Uint8Array {
  const present: Uint8Array[] = [];
  const collect = (p: Part): void => {
    if (Array.isArray(p)) p.forEach(collect);
    else if (p !== undefined) present.push(p);
  };
  parts.forEach(collect);
  const out = new Uint8Array(present.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of present) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An int32/int64/enum/bool field. */
export function intField(fieldNumber: number, value: number): Uint8Array {
  return message(tag(fieldNumber, WIRE_VARINT), varint(value));
}

/** A bytes or nested-message field (the payload is already encoded). */
export function bytesField(fieldNumber: number, payload: Uint8Array): Uint8Array {
  return message(tag(fieldNumber, WIRE_LENGTH_DELIMITED), varint(payload.length), payload);
}

/** A string field, UTF-8. */
export function stringField(fieldNumber: number, text: string): Uint8Array {
  return bytesField(fieldNumber, textEncoder.encode(text));
}
