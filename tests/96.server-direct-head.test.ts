// The direct path's byte-level head parser (lib/server/direct-head.ts) against the text version
// it replaced, kept here as the oracle: decode the head as latin1, split it into lines, match
// each line with a regular expression. On random heads built from the direct form and mutated
// (field name case and spacing, duplicates, refused fields, odd bytes, bare CR and LF, other
// request lines), both must agree: null for the same heads, the same Head for the rest.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseHead } from '../lib/server/direct-head.js';
import { wantsBinary } from '../lib/server/http.js';
import { MODEL_NAME } from '../lib/server/options.js';
import { isJsonType, type ServedModel } from '../lib/server/predict.js';
import { MODELS, head } from './server-heads.js';

const LINE_START = 'POST /v1/models/';
const LINE_END = '/predict HTTP/1.1';
const FIELD_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;
const OTHER_BYTES = /[^\t\x20-\x7e\r\n]/;
const DIGITS = /^[0-9]{1,15}$/;

/** The text parser the direct path used before: the oracle. */
function oracle(text: string, models: Map<string, ServedModel>) {
  if (OTHER_BYTES.test(text)) return null;
  const lines = text.split('\r\n');
  const line = lines[0];
  if (!line.startsWith(LINE_START) || !line.endsWith(LINE_END)) return null;
  const name = line.slice(LINE_START.length, line.length - LINE_END.length);
  if (!MODEL_NAME.test(name)) return null;
  const served = models.get(name);
  if (served === undefined) return null;
  let host = false;
  let length = -1;
  let type: string | undefined;
  let accept: string | undefined;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const m = FIELD_LINE.exec(lines[i]);
    if (m === null) return null;
    const value = m[2];
    switch (m[1].toLowerCase()) {
      case 'host':
        if (host) return null;
        host = true;
        break;
      case 'content-length':
        if (length >= 0 || !DIGITS.test(value)) return null;
        length = Number(value);
        break;
      case 'content-type':
        if (type !== undefined) return null;
        type = value.toLowerCase();
        break;
      case 'accept':
        accept = accept === undefined ? value : `${accept}, ${value}`;
        break;
      case 'connection':
        for (const token of value.toLowerCase().split(',')) {
          const t = token.trim();
          if (t === 'close') close = true;
          else if (t !== 'keep-alive' && t !== '') return null;
        }
        break;
      case 'transfer-encoding':
      case 'content-encoding':
      case 'expect':
      case 'upgrade':
        return null;
      default:
        break;
    }
  }
  if (!host || length < 0) return null;
  const binary = type !== undefined && type.startsWith('application/octet-stream');
  if (!binary && !isJsonType(type ?? '')) return null;
  return { served, length, binary, acceptBinary: wantsBinary(accept), close };
}

/** Both parsers on one head (the bytes up to, not including, the blank line). */
function expectSame(head: string): void {
  const b = Buffer.from(`${head}\r\n\r\n`, 'latin1');
  const end = b.indexOf('\r\n\r\n');
  const text = b.toString('latin1', 0, end);
  expect({ head, got: parseHead(b, end, MODELS) }).toEqual({ head, got: oracle(text, MODELS) });
}

describe('direct-path head parser (bytes) against the text parser it replaced', () => {
  it('agrees on random heads', () => {
    let parsed = 0;
    fc.assert(fc.property(head, (text) => {
      expectSame(text);
      if (parseHead(Buffer.from(`${text}\r\n\r\n`, 'latin1'), text.length, MODELS) !== null) parsed++;
    }), { numRuns: 3000, seed: 8 });
    // The property must see both outcomes in earnest, not only nulls.
    expect(parsed).toBeGreaterThan(200);
  });

  it('agrees on hand-picked heads', () => {
    const heads = [
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Type: application/octet-stream\r\nAccept: application/octet-stream',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nAccept: text/html\r\nAccept: application/octet-stream',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nHost: b',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Type: a\r\nContent-Type: b',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n Folded: x',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length:3\t',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n: empty name',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: caf\xe9',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 123456789012345',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456',
      'POST /v1/models/demo/predict HTTP/1.1\r\nHost: a\r\nContent-Length: ',
      'POST /v1/models/demo/predict HTTP/1.1',
      'POST /v1/models/demo/predict HTTP/1.1\r\n',
      'POST /v1/models/demo',
      'POST /v1/models/d',
      'POST /v1/models/\xe9/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 3',
    ];
    for (const h of heads) expectSame(h);
  });
});
