// The V8 young-generation size `mlpkit serve` runs its HTTP work with.
//
// Why: with V8's default semi-space (16 MiB here), about half of the server processes started
// on this machine fell into a state in which every scavenge found ~2.8 MB of finished requests
// still reachable and promoted them, so the old space filled every ~250 ms: 17-19 mark-compacts
// in 5 s of load instead of 1, and ~20% fewer requests per second at 64 connections (Node 20,
// --trace-gc-nvp: new_space_survived ~2.8 MB per scavenge against ~0.16 MB in the other half).
// With a 64 MiB semi-space none of 13 runs did (0 of 8 against 4 of 8 with the default, runs
// alternated). The price is memory: peak RSS 241-248 MiB against 149-150 MiB under 1024
// connections, ~118 against 94-115 MiB at 64. V8 reads the size only when the process starts, so
// the server runs in a process started with it (serve.ts).

/** The semi-space the server's processes get unless the user chose one. */
export const SERVE_SEMI_SPACE_MB = 64;

/** V8 spells its flags with '-' or '_'. */
const SEMI_SPACE_FLAG = /--max[-_]semi[-_]space[-_]size\b/;

/** True when this process was started with its own semi-space size (flag or NODE_OPTIONS). */
export function semiSpaceChosen(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return execArgv.some((a) => SEMI_SPACE_FLAG.test(a)) || SEMI_SPACE_FLAG.test(nodeOptions);
}

/** Node flags for a server process: the semi-space size, unless the user gave one. */
export function serveExecArgv(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  return semiSpaceChosen(execArgv, nodeOptions) ? [...execArgv] : [...execArgv, `--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`];
}
