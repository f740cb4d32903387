// Reads a request body up to a size limit. A declared Content-Length over the limit is refused
// before a byte is read; a chunked body is cut off the moment it passes the limit. Either way the
// rest of the body is then read and thrown away (see `linger` in http.ts): a server that closes
// its connection while the client is still sending makes the client's kernel reset it, and the
// client sees EPIPE / ECONNRESET instead of the 413. All bodies being read share one budget of
// bytes (BodyBudget), past which a body is answered 503 the same way.

import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.js';

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'payload_too_large', `the body exceeds the server's limit of ${limit} bytes; send fewer rows per request`);
}

/**
 * The bytes of request bodies being read at once, over every connection. Bodies are buffered
 * whole before they are decoded, so without this cap memory under many slow uploads would be
 * connections x maxBodyBytes (1024 clients x 1 MiB = 1 GiB); with it, a body that would pass the
 * cap is answered 503 with Retry-After, as a full queue is.
 */
export class BodyBudget {
  /** [bytes held, limit], in one buffer the native socket path reads too (socket-path.ts). */
  readonly cell = new Float64Array(2);
  constructor(readonly limit: number, private readonly retryAfterSeconds: number) {
    this.cell[1] = limit;
  }

  get used(): number {
    return this.cell[0];
  }

  set used(bytes: number) {
    this.cell[0] = bytes;
  }

  overloaded(): HttpError {
    return new HttpError(503, 'overloaded',
      `the server is reading ${this.limit} bytes of request bodies already; retry after ${this.retryAfterSeconds} s`,
      { 'Retry-After': String(this.retryAfterSeconds) });
  }
}

export function readBody(
  req: IncomingMessage,
  limit: number,
  budget: BodyBudget,
  done: (err: HttpError | null, body: Buffer | null) => void,
): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return done(tooLarge(limit), null);
  if (declared !== undefined && budget.used + Number(declared) > budget.limit) return done(budget.overloaded(), null);
  const chunks: Buffer[] = [];
  let length = 0;
  let finished = false;
  // The listeners stay on the request once it is finished and do nothing: removing three
  // listeners from a stream cost more than the rest of this function.
  const finish = (err: HttpError | null, body: Buffer | null) => {
    finished = true;
    budget.used -= length;
    if (err) req.resume(); // discard the rest
    done(err, body);
  };
  const onData = (chunk: Buffer) => {
    if (finished) return;
    if (length + chunk.length > limit) return finish(tooLarge(limit), null);
    if (budget.used + chunk.length > budget.limit) return finish(budget.overloaded(), null);
    length += chunk.length;
    budget.used += chunk.length;
    chunks.push(chunk);
  };
  const onEnd = () => {
    if (!finished) finish(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length));
  };
  // A client gone mid-body: its bytes leave the budget (no answer is owed).
  const onClose = () => {
    if (finished) return;
    finished = true;
    budget.used -= length;
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onClose);
}
