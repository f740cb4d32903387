// Errors the server answers with: an HTTP status and a JSON body { error: { code, message } }.
// Codes are stable strings a client can branch on; messages say what was wrong and how to fix it.

export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

export function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);
