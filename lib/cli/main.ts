#!/usr/bin/env node
// The `mlpkit` executable (package.json "bin"). Everything lives in run.ts, which tests call
// in-process; this file only connects it to the real process.

import { runCli } from './run.js';

// `mlpkit predict ... | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await runCli(process.argv.slice(2));
