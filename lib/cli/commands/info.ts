// `mlpkit info`: what this machine's mlpkit runs on.

import { info } from '../../info.js';
import { flag, parseCommand, type Command } from '../args.js';

const usage = `Usage: mlpkit info [--json]

Prints the version, the backend new models get (cuda, native or reference, and why native did
not load), the kernel ISA in use and the ones this CPU can run, the thread count and whether CUDA
is available.

  --json    print the same as one JSON object`;

// A load error can carry Node's require stack on its later lines: the first says what failed.
function firstLine(text: string): string {
  return text.split('\n')[0];
}

export const infoCommand: Command = {
  name: 'info',
  summary: 'backend, ISA, threads, CUDA and versions of this installation',
  usage,
  async run(argv, io) {
    const { values, help } = parseCommand('info', argv, { json: { type: 'boolean' } }, { min: 0, max: 0, names: 'no arguments' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const i = info();
    if (flag(values, 'json')) return void io.stdout.write(`${JSON.stringify(i, null, 2)}\n`);
    const native = i.native.available
      ? `available (${i.native.isa}; this CPU runs ${i.native.isas?.join(', ')}${i.native.compiler ? `; built with ${i.native.compiler}` : ''})`
      : `not loaded: ${firstLine(i.native.error ?? 'unknown reason')}`;
    const rows: [string, string][] = [
      ['mlpkit', i.version],
      ['backend', i.backend],
      ['isa', i.isa],
      ['threads', String(i.threads)],
      ['cuda', i.cuda.available
        ? `yes (${i.cuda.devices.map((d) => d.name).join(', ')})`
        : `no (${i.cuda.reason ?? 'unknown reason'})`],
      ['native addon', native],
      ['node', `${i.node} (${i.platform}-${i.arch})`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    io.stdout.write(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n');
  },
};
