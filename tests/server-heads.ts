// Random request heads for the head parsers' tests (96.server-direct-head, 96.server-socket-path):
// the direct form, with field names in any case and spacing, duplicates, refused fields, odd
// bytes, bare CR and LF, and other request lines, so that both outcomes of a parse are common.

import fc from 'fast-check';
import type { ServedModel } from '../lib/server/predict.js';

const served = (name: string) => ({ name, labels: { model: name } }) as unknown as ServedModel;
export const MODELS = new Map(['demo', 'm.2', 'A-b_c'].map((n) => [n, served(n)]));

const NAMES = ['Host', 'host', 'HOST', 'hOsT', 'Content-Length', 'content-length', 'CONTENT-LENGTH', 'Content-Type', 'content-type',
  'Accept', 'accept', 'Connection', 'connection', 'Transfer-Encoding', 'Content-Encoding', 'Expect', 'Upgrade', 'upgradE',
  'User-Agent', 'X-Trace', 'Content-Lengthx', 'Hos', 'Hosts', 'Accept-Encoding', 'Keep-Alive', '!#$%&\'*+-.^_`|~09'];
const VALUES = ['127.0.0.1:8080', '0', '7', '126', '00012', '123456789012345', '1234567890123456', '-1', '1 2', '+3', '0x10', '',
  'application/json', 'Application/JSON; charset=utf-8', 'application/octet-stream', 'APPLICATION/OCTET-STREAM', 'text/plain',
  'application/x-www-form-urlencoded', 'image/png', 'close', 'Close', 'keep-alive', 'keep-alive, close', 'upgrade', ' , ',
  'application/octet-stream;q=0.5, application/json', '*/*', 'chunked', 'gzip', '100-continue', 'websocket', 'a\tb'];
const BLANKS = ['', ' ', '  ', '\t', ' \t '];
// Pieces a mutation splices into a line: odd bytes, bare CR or LF, a colon, a space before it.
const JUNK = ['\r', '\n', '\x00', '\x7f', '\xe9', ':', ' :', '\r\n', '/', ' '];

const fieldLine = fc.tuple(fc.constantFrom(...NAMES), fc.constantFrom(...BLANKS), fc.constantFrom(...VALUES), fc.constantFrom(...BLANKS))
  .map(([name, before, value, after]) => `${name}:${before}${value}${after}`);
const requestLine = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('demo', 'm.2', 'A-b_c').map((n) => `POST /v1/models/${n}/predict HTTP/1.1`) },
  { weight: 1, arbitrary: fc.constantFrom('POST /v1/models/Demo/predict HTTP/1.1', 'POST /v1/models/demo/predict HTTP/1.0',
    'post /v1/models/demo/predict HTTP/1.1', 'POST /v1/models/demo/predict  HTTP/1.1', 'POST /v1/models/demo/predict HTTP/1.1 ',
    'POST /v1/models/demo/x/predict HTTP/1.1', 'POST /v1/models//predict HTTP/1.1', 'POST /v1/models/demo/predict?x=1 HTTP/1.1',
    'POST /v1/models/unknown/predict HTTP/1.1', 'POST /v1/models/demo/predict', 'POST /v1/models/') },
);
const mutation = fc.tuple(fc.nat(), fc.constantFrom(...JUNK));

const mutations = fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 2 }) });
export const head = fc.tuple(requestLine, fc.array(fieldLine, { maxLength: 5 }), mutations, fc.boolean())
  .map(([line, fields, mutations, usual]) => {
    // Most heads hold the fields a client sends, so they parse; the rest are left as drawn.
    const lines = usual ? [line, 'Host: x', ...fields, 'Content-Length: 12'] : [line, ...fields];
    let text = lines.join('\r\n');
    for (const [at, junk] of mutations) {
      const i = at % (text.length + 1);
      text = text.slice(0, i) + junk + text.slice(i);
    }
    return text;
  })
  .filter((text) => !text.includes('\r\n\r\n'));

