// `mlpkit sparsify`: a placeholder that says so. The approximate sparse-activation API
// (thresholds, top-k, predictors; DESIGN.md) is not built yet, and a command that quietly did
// nothing would be worse than one that says what exists instead.

import { parseCommand, type Command } from '../args.js';
import { CliError } from '../errors.js';

const usage = `Usage: mlpkit sparsify MODEL --out FILE   (not available in this version)

Approximate activation sparsity (calibrated thresholds, top-k, predictors) is not part of
mlpkit yet, so there is nothing to write. What exists: exact ReLU sparsity, which the native
backend applies on its own to wide layers at small batches (see the README, "Exact activation
sparsity"); no conversion is needed for it.`;

export const sparsifyCommand: Command = {
  name: 'sparsify',
  summary: '(not available in this version)',
  usage,
  async run(argv, io) {
    const { help } = parseCommand('sparsify', argv, { out: { type: 'string', short: 'o' } }, { min: 0, max: 1, names: 'MODEL' });
    if (help) return void io.stdout.write(`${usage}\n`);
    throw new CliError('mlpkit sparsify: not available in this version (approximate activation sparsity is not built yet)', 1,
      'the native backend already skips exactly-zero ReLU activations on its own; see mlpkit sparsify --help');
  },
};
