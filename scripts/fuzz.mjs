#!/usr/bin/env node
// npm run fuzz: the API and file fuzz suites (tests/86, tests/87) with many runs per property.
//   MLPKIT_FUZZ_RUNS=100000 npm run fuzz      runs per property (default 20000)
//   MLPKIT_FUZZ_SEED=42 npm run fuzz          another seed (default: a new one each run, printed)
//   npm run fuzz -- -t qmatmul                extra arguments go to vitest
// A failure prints fast-check's shrunk counterexample and the seed and path that replay it.

import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const env = { ...process.env };
env.MLPKIT_FUZZ_RUNS ??= '20000';
env.MLPKIT_FUZZ_SEED ??= String(Math.floor(Math.random() * 2 ** 31));
console.log(`mlpkit fuzz: MLPKIT_FUZZ_RUNS=${env.MLPKIT_FUZZ_RUNS} MLPKIT_FUZZ_SEED=${env.MLPKIT_FUZZ_SEED}`);
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
const result = spawnSync(
  process.execPath,
  [vitest, 'run', 'tests/86.fuzz-api.test.ts', 'tests/87.fuzz-files.test.ts', '--testTimeout=0', ...process.argv.slice(2)],
  { cwd: root, env, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
