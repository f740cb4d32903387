// The loss-curve plot lives in lib/cli/svg-plot.ts (the CLI's `train` writes one too); the demo
// keeps its one-call helper that writes the file.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { lossCurveSvg } from '../../dist/cli/svg-plot.js';

export { lossCurveSvg };

/** Render and write to `path`, creating its directory. */
export function writeLossCurveSvg(path, points, options) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, lossCurveSvg(points, options));
}
