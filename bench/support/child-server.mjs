// A server under test in its own process, so the load generator and the server never share an
// event loop: start it, wait for the "listening on URL" line it prints, read its memory, stop it.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Starts `node args...` and resolves { url, pid, rssBytes(), stop() } once it listens. */
export function startServer(label, args, { timeoutMs = 20_000 } = {}) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${label}: no "listening on" line within ${timeoutMs} ms; stderr: ${err.trim()}`));
    }, timeoutMs);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${signal ?? code}) before listening: ${err.trim() || out.trim()}`));
    });
    child.stdout.on('data', () => {
      const m = /listening on (http:\/\/[^\s;]+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: m[1],
        pid: child.pid,
        alive: () => child.exitCode === null && child.signalCode === null,
        stderr: () => err,
        rssBytes: () => rssOf(child.pid),
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          const r = await exited;
          clearTimeout(killer);
          return r;
        },
      });
    });
  });
}

/**
 * Resident memory of a process and its descendants in bytes (Linux /proc; null elsewhere): a
 * server may run in cluster workers (--workers N forks N), and the memory it holds is theirs,
 * not only the primary's.
 */
export function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!m) return null;
    let bytes = Number(m[1]) * 1024;
    for (const child of childPids(pid)) bytes += rssOf(child) ?? 0;
    return bytes;
  } catch {
    return null;
  }
}

function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
