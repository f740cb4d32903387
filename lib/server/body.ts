// Reads a request body up to a size limit. A declared Content-Length over the limit is refused
// before a byte is read; a chunked body is cut off the moment it passes the limit.

import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.js';

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'payload_too_large', `the body exceeds the server's limit of ${limit} bytes; send fewer rows per request`,
    { Connection: 'close' });
}

export function readBody(req: IncomingMessage, limit: number, done: (err: HttpError | null, body: Buffer | null) => void): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return done(tooLarge(limit), null);
  const chunks: Buffer[] = [];
  let length = 0;
  let finished = false;
  const onData = (chunk: Buffer) => {
    length += chunk.length;
    if (length > limit) {
      finished = true;
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      return done(tooLarge(limit), null);
    }
    chunks.push(chunk);
  };
  const onEnd = () => {
    if (finished) return;
    finished = true;
    done(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length));
  };
  req.on('data', onData);
  req.on('end', onEnd);
}
