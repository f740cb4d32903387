// The head of a direct-path request (direct-http.ts), read from its bytes.
//
// Why bytes and not text: this runs once per request, and at one row per request the server's
// throughput is set by its per-request CPU. Decoding the head to a string, splitting its lines
// and matching each with a regular expression cost ~1.6 us of the ~22 us a request takes; one
// pass over the bytes costs a tenth of that.
//
// What it accepts is unchanged from the text version it replaced (kept in the tests as the
// oracle this one is checked against on random heads): the request line
//   POST /v1/models/<served model>/predict HTTP/1.1
// then field lines `name:value` with a token name, optional blanks around the value, only tab
// and printable ASCII in them; one Host; one Content-Length of 1-15 digits; at most one
// Content-Type, JSON or octet-stream; Connection tokens close or keep-alive; and no
// Transfer-Encoding, Content-Encoding, Expect or Upgrade. Anything else is null, and the
// request goes to node:http.

import { isJsonType, type ServedModel } from './predict.js';
import { wantsBinary } from './http.js';

export interface Head {
  served: ServedModel;
  /** Content-Length. */
  length: number;
  /** The body is octet-stream float32 rows (else JSON). */
  binary: boolean;
  /** The answer goes back as octet-stream (Accept). */
  acceptBinary: boolean;
  /** Connection: close. */
  close: boolean;
}

const enum Ch { Tab = 9, Newline = 10, Return = 13, Space = 32, Slash = 47, Colon = 58, Tilde = 126 }

const bytes = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
const LINE_START = bytes('POST /v1/models/');
const LINE_END = bytes('/predict HTTP/1.1');

/** Token characters (RFC 9110): the bytes a field name may hold. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1;

// The fields the parser looks at, by the lowercase bytes of their names.
const enum Field { Other, Host, ContentLength, ContentType, Accept, Connection, Refused }
const FIELDS: [Uint8Array, Field][] = [
  [bytes('host'), Field.Host],
  [bytes('content-length'), Field.ContentLength],
  [bytes('content-type'), Field.ContentType],
  [bytes('accept'), Field.Accept],
  [bytes('connection'), Field.Connection],
  [bytes('transfer-encoding'), Field.Refused],
  [bytes('content-encoding'), Field.Refused],
  [bytes('expect'), Field.Refused],
  [bytes('upgrade'), Field.Refused],
];

/**
 * Whether b[from, to) is `lower` with its letters in any case (`lower`: lowercase letters, '-'
 * and '/'; b's bytes: token characters, or a value's tab and printable ASCII).
 */
function equalsIgnoringCase(b: Uint8Array, from: number, to: number, lower: Uint8Array): boolean {
  if (to - from !== lower.length) return false;
  // `| 0x20` lowercases a letter. Of the bytes b may hold here, only a letter lands on a
  // lowercase letter that way, and only '-' or '/' themselves land on '-' or '/' (the other
  // bytes that would, 0x0d and 0x0f, are never inside a name or value).
  for (let i = 0; i < lower.length; i++) if ((b[from + i] | 0x20) !== lower[i]) return false;
  return true;
}

/** Which field b[from, to) names (every byte a token character). */
function fieldOf(b: Uint8Array, from: number, to: number): Field {
  for (const [name, field] of FIELDS) if (equalsIgnoringCase(b, from, to, name)) return field;
  return Field.Other;
}

function startsWithAt(b: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > b.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[at + i] !== prefix[i]) return false;
  return true;
}

// The two usual Content-Type values, known without making a string.
const JSON_MEDIA = 'application/json';
const BINARY_MEDIA = 'application/octet-stream';
const JSON_BYTES = bytes(JSON_MEDIA);
const BINARY_BYTES = bytes(BINARY_MEDIA);

/** The served model named b[from, to), if any. */
function modelAt(b: Buffer, from: number, to: number, models: Map<string, ServedModel>): ServedModel | undefined {
  if (models.size > 8) return models.get(b.toString('latin1', from, to));
  // A server serves a few models: comparing bytes with each name saves making a string.
  const n = to - from;
  for (const served of models.values()) {
    const name = served.name;
    if (name.length !== n) continue;
    let i = 0;
    while (i < n && name.charCodeAt(i) === b[from + i]) i++;
    if (i === n) return served;
  }
  return undefined;
}

/**
 * The head b[0, end) (request line and fields, without the blank line that ends it) if it is
 * of the direct form, else null.
 */
export function parseHead(b: Buffer, end: number, models: Map<string, ServedModel>): Head | null {
  // The request line. A served model's name is checked when the server starts, so matching
  // one is the whole check of the name's bytes.
  if (!startsWithAt(b, 0, LINE_START)) return null;
  let i = LINE_START.length;
  while (i < end && b[i] !== Ch.Slash) i++;
  if (i >= end) return null;
  const served = modelAt(b, LINE_START.length, i, models);
  if (served === undefined) return null;
  if (!startsWithAt(b, i, LINE_END)) return null;
  i += LINE_END.length;

  let host = false;
  let length = -1;
  let type: string | undefined;
  let accept: string | undefined;
  let close = false;
  while (i < end) {
    // Each field line starts after a CR LF.
    if (b[i] !== Ch.Return || i + 1 >= end || b[i + 1] !== Ch.Newline) return null;
    i += 2;
    const nameAt = i;
    while (i < end && b[i] < 128 && TOKEN[b[i]] === 1) i++;
    if (i === nameAt || i >= end || b[i] !== Ch.Colon) return null;
    const field = fieldOf(b, nameAt, i);
    i++;
    while (i < end && (b[i] === Ch.Space || b[i] === Ch.Tab)) i++;
    const valueAt = i;
    let valueEnd = i; // after the value's last non-blank byte
    for (; i < end; i++) {
      const c = b[i];
      if (c === Ch.Return) break;
      // Tab and printable ASCII only: a bare LF, a NUL, obs-text all go to node.
      if (c > Ch.Tilde || (c < Ch.Space && c !== Ch.Tab)) return null;
      if (c !== Ch.Space && c !== Ch.Tab) valueEnd = i + 1;
    }
    switch (field) {
      case Field.Host:
        if (host) return null;
        host = true;
        break;
      case Field.ContentLength: {
        if (length >= 0 || valueEnd === valueAt || valueEnd - valueAt > 15) return null;
        let v = 0;
        for (let k = valueAt; k < valueEnd; k++) {
          const d = b[k] - 48;
          if (d < 0 || d > 9) return null;
          v = v * 10 + d;
        }
        length = v;
        break;
      }
      case Field.ContentType:
        if (type !== undefined) return null;
        if (equalsIgnoringCase(b, valueAt, valueEnd, JSON_BYTES)) type = JSON_MEDIA;
        else if (equalsIgnoringCase(b, valueAt, valueEnd, BINARY_BYTES)) type = BINARY_MEDIA;
        else type = b.toString('latin1', valueAt, valueEnd).toLowerCase();
        break;
      case Field.Accept: {
        const value = b.toString('latin1', valueAt, valueEnd);
        accept = accept === undefined ? value : `${accept}, ${value}`; // as node joins them
        break;
      }
      case Field.Connection:
        for (const token of b.toString('latin1', valueAt, valueEnd).toLowerCase().split(',')) {
          const t = token.trim();
          if (t === 'close') close = true;
          else if (t !== 'keep-alive' && t !== '') return null;
        }
        break;
      case Field.Refused:
        return null;
      default:
        break;
    }
  }
  if (!host || length < 0) return null;
  const binary = type !== undefined && type.startsWith(BINARY_MEDIA);
  if (!binary && !isJsonType(type ?? '')) return null;
  return { served, length, binary, acceptBinary: wantsBinary(accept), close };
}
