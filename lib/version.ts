import { createRequire } from 'node:module';

// lib/version.ts and dist/version.js both sit one folder below package.json.
const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

export const VERSION: string = pkg.version;
