// The progress bar lives in lib/cli/progress.ts (the CLI's `train` draws one too).
export { createProgress } from '../../dist/cli/progress.js';
