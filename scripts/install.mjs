#!/usr/bin/env node
// npm `install` script: make sure a native build of mlpkit loads, or say clearly that the
// pure-TypeScript reference backend will be used. It never fails the install.
//
//   1. MLPKIT_SKIP_BUILD=1            -> do nothing.
//   2. a prebuild (or earlier build) loads through node-gyp-build -> done (unless --force).
//   3. cmake-js (when it and cmake are installed) -> build/Release/mlpkit.node (CPU only: the
//      optional CUDA addon is `npm run build:cuda`, never part of the install).
//   4. node-gyp from binding.gyp (npm ships one) -> build/Release/mlpkit.node.
//   5. all failed -> one warning; lib/backend falls back to the reference backend at runtime.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const force = process.argv.includes('--force');
const jobs = String(availableParallelism());

function log(message) {
  console.log(`mlpkit: ${message}`);
}

/** The path of the addon node-gyp-build would load, after checking that it really loads. */
function loadableAddon() {
  try {
    const nodeGypBuild = require('node-gyp-build');
    const path = nodeGypBuild.resolve(root);
    const addon = require(path);
    if (typeof addon?.Model !== 'function' || typeof addon?.info !== 'function') {
      throw new Error(`${path} does not export Model and info`);
    }
    return { path, info: addon.info() };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** Runs a command with its output streamed to ours; true when it exits with status 0. */
function run(command, args, env = {}) {
  log(`running ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs, ...env },
    shell: process.platform === 'win32',
  });
  if (result.error) {
    log(`could not start ${command}: ${result.error.message}`);
    return false;
  }
  return result.status === 0;
}

function onPath(command) {
  const result = spawnSync(command, ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' });
  return !result.error && result.status === 0;
}

/** A package's bin script, resolved from this package's node_modules; null when not installed. */
function packageBin(pkg, bin) {
  try {
    const manifestPath = require.resolve(`${pkg}/package.json`);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    const rel = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin?.[bin];
    return rel ? join(dirname(manifestPath), rel) : null;
  } catch {
    return null;
  }
}

function buildWithCmakeJs() {
  const bin = packageBin('cmake-js', 'cmake-js');
  if (!bin) return 'cmake-js is not installed';
  if (!onPath('cmake')) return 'cmake is not on PATH';
  // cmake-js builds Node-API addons against its own bundled headers: no download needed.
  // MLPKIT_CUDA=OFF: installing never compiles CUDA, even where nvcc is present (slow, and the
  // CPU addon does not need it); `npm run build:cuda` builds the CUDA addon on request.
  const args = [bin, 'compile', '--out', 'build', '--parallel', jobs, '--CDMLPKIT_CUDA=OFF'];
  return run(process.execPath, args) ? null : 'cmake-js failed';
}

function buildWithNodeGyp() {
  // npm exports the node-gyp it bundles; otherwise a local one, otherwise one on PATH.
  const script = process.env.npm_config_node_gyp || packageBin('node-gyp', 'node-gyp');
  const [command, prefix] =
    script && existsSync(script) ? [process.execPath, [script]] : onPath('node-gyp') ? ['node-gyp', []] : [null, []];
  if (!command) return 'node-gyp is not available';
  const args = [...prefix, 'rebuild', '--jobs', jobs];
  // Outside npm (no npm_config_nodedir), use the headers installed beside this node binary when
  // they are there, rather than letting node-gyp try to download them.
  if (!process.env.npm_config_nodedir) {
    const prefixDir = resolve(dirname(process.execPath), '..');
    if (existsSync(join(prefixDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefixDir}`);
  }
  return run(command, args) ? null : 'node-gyp failed';
}

function main() {
  if (process.env.MLPKIT_SKIP_BUILD === '1') {
    log('MLPKIT_SKIP_BUILD=1, not building the native addon');
    return;
  }
  if (!force) {
    const found = loadableAddon();
    if (found.path) {
      log(`native addon ${found.path} loads (isa ${found.info.isa}); nothing to build`);
      return;
    }
  }
  const reasons = [];
  for (const [name, build] of [
    ['cmake-js', buildWithCmakeJs],
    ['node-gyp', buildWithNodeGyp],
  ]) {
    const failure = build();
    if (failure === null) {
      const built = loadableAddon();
      if (built.path) {
        log(`built ${built.path} with ${name} (isa ${built.info.isa})`);
        return;
      }
      reasons.push(`${name} built an addon that does not load: ${built.error}`);
    } else {
      reasons.push(failure);
    }
  }
  console.warn(
    `mlpkit: WARNING: the native addon could not be built (${reasons.join('; ')}). ` +
      'mlpkit will use its pure-TypeScript reference backend, which is correct but much slower. ' +
      'Install Python 3, make and a C++17 compiler (g++ or clang++) for node-gyp, then run `npm rebuild mlpkit` to build it.',
  );
}

try {
  main();
} catch (err) {
  console.warn(`mlpkit: WARNING: install script error (${err?.message ?? err}); using the reference backend.`);
}
process.exit(0);
