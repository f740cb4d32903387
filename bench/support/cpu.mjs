// The CPU a bench ran on, for its report. Cloud VMs often name every AMD part just "AMD EPYC",
// and this project's runs have landed on Zen 4 and Zen 5 hosts under that one name, whose
// memory bandwidth differs by 2x; so on Linux the x86 family and model from /proc/cpuinfo are
// added, with AMD's generation where the family tells it.

import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

const AMD_FAMILIES = { 23: 'Zen/Zen 2', 25: 'Zen 3/Zen 4', 26: 'Zen 5' };

export function cpuName() {
  const name = cpus()[0]?.model?.trim() || 'unknown CPU';
  let text;
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return name;
  }
  const field = (key) => text.match(new RegExp(`^${key}\\s*:\\s*(.+)$`, 'm'))?.[1]?.trim();
  const family = Number(field('cpu family'));
  const model = Number(field('model'));
  if (!Number.isInteger(family) || !Number.isInteger(model)) return name;
  const generation = field('vendor_id') === 'AuthenticAMD' ? AMD_FAMILIES[family] : undefined;
  return `${name} (family ${family} model ${model}${generation ? `, ${generation}` : ''})`;
}
