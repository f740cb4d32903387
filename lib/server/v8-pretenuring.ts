// Turns off V8's allocation-site pretenuring in a process that serves models, because it cost
// the server ~20% of its requests per second in about half of the processes started.
//
// What happens (Node 20, V8 11.3; --trace-pretenuring-statistics and --trace-deopt): V8 counts,
// per allocation site (an object literal or constructor call in hot code), how many of the
// objects made there are still alive at each scavenge. While the young generation is still
// growing, scavenges come so often that nothing has had time to die, so sites that make
// per-request objects (node's IncomingMessage, our body reader's closures) look long-lived.
// When the young generation first reaches its full size, as load ramps up, V8 decides on those
// sites, marks some "tenure", deoptimises the code that allocates there and from then on makes
// their objects directly in the old space. Each such dead-but-not-yet-collected old object keeps
// the young objects it points to alive through every scavenge (old-to-new references are roots),
// so each scavenge promoted every request since the last one (~2.8 MB at 64 connections), the
// old space filled every ~250 ms and mark-compacts ran 17-19 times in 5 s instead of 0-1.
// Later V8 versions skip these decisions while the young generation is small for the same
// reason; V8 11.3 does not. Whether a process fell into it depended on the timing of that first
// full-size scavenge, hence the ~half. The flag is turned off on newer Node versions too, where
// this was not measured: a server's objects live for one request, so pretenuring has nothing to
// gain there either.
//
// The flag is read at every scavenge and allocation, so setting it at run time takes effect from
// then on; it must come before load (a site already marked stays marked). Measured (alternated
// runs, 64 connections, 3 s after a first 3 s run, 6 processes each): median 48.7k requests/s
// with it off, 37.6k forced on (slow state in all six), 48.4k with the previous remedy, a 64 MiB
// young generation in a forked process, which held 173-175 MiB of RSS where this holds 91-94.

import { setFlagsFromString } from 'node:v8';

/** A process started with either spelling of the flag, on or off, keeps what its user chose. */
const PRETENURING_FLAG = /--(no[-_])?allocation[-_]site[-_]pretenuring\b/;

let turnedOff = false;

/** True when node was started with its own setting of the flag (not allowed in NODE_OPTIONS). */
export function pretenuringChosen(execArgv: readonly string[] = process.execArgv): boolean {
  return execArgv.some((a) => PRETENURING_FLAG.test(a));
}

/**
 * Turns allocation-site pretenuring off for this process, unless node was started with the flag
 * (either form). Process-wide: it changes when V8 moves objects to the old space, never what a
 * program computes.
 */
export function turnOffPretenuring(): void {
  if (turnedOff || pretenuringChosen()) return;
  setFlagsFromString('--no-allocation-site-pretenuring');
  turnedOff = true;
}
