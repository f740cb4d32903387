// The few protobuf wire-format writers the ONNX exporter needs (onnx.ts). A message is built
// from already-encoded fields, so nested messages are plain values:
// message(field(...), field(...)) -> Encoded, and encode() joins the result into bytes once.
// Until then an Encoded is the list of byte pieces it is made of: joining at every level copied
// each weight once per level of nesting (tensor, graph, model), three fresh copies of a 268 MB
// layer, which with their page faults took 5.4 s to export a 4096 -> 16384 layer.
//
// Only what ONNX's ModelProto uses here: varints (int32/int64/enum), length-delimited fields
// (strings, bytes, nested messages). JS numbers carry integers exactly up to 2^53, far above
// any dimension or version written here, so no BigInt path.

import { offerHugePages } from '../huge-pages.js';

const textEncoder = new TextEncoder();

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;

/** Encoded protobuf bytes: `pieces` in order, `length` bytes in all. */
export interface Encoded {
  readonly length: number;
  readonly pieces: readonly Uint8Array[];
}

type Part = Encoded | Uint8Array | undefined | Part[];

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

/** Encoded pieces in order (fields, arrays of fields, or undefined for an absent optional field). */
export function message(...parts: Part[]): Encoded {
  const pieces: Uint8Array[] = [];
  let length = 0;
  const collect = (p: Part): void => {
    if (p === undefined) return;
    if (Array.isArray(p)) p.forEach(collect);
    else if (p instanceof Uint8Array) {
      pieces.push(p);
      length += p.length;
    } else {
      for (const piece of p.pieces) pieces.push(piece);
      length += p.length;
    }
  };
  parts.forEach(collect);
  return { length, pieces };
}

/** The bytes of an encoded message, joined into one array. */
export function encode(encoded: Encoded): Uint8Array {
  const out = offerHugePages(new Uint8Array(encoded.length));
  let at = 0;
  for (const piece of encoded.pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/** An int32/int64/enum/bool field. */
export function intField(fieldNumber: number, value: number): Encoded {
  return message(tag(fieldNumber, WIRE_VARINT), varint(value));
}

/** A bytes or nested-message field (the payload is already encoded; bytes are not copied). */
export function bytesField(fieldNumber: number, payload: Encoded | Uint8Array): Encoded {
  return message(tag(fieldNumber, WIRE_LENGTH_DELIMITED), varint(payload.length), payload);
}

/** A string field, UTF-8. */
export function stringField(fieldNumber: number, text: string): Encoded {
  return bytesField(fieldNumber, textEncoder.encode(text));
}
