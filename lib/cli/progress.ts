// A tiny terminal progress bar. On a TTY it redraws one line in place with '\r'; elsewhere (CI
// logs, pipes) it prints a plain line each time another ~10% is done, so logs stay short.

const BAR_WIDTH = 24;

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
}

export interface Progress {
  /** fraction in [0, 1]; text is appended after the bar. */
  update(fraction: number, text?: string): void;
  /** Finish the line (always prints the final state). */
  done(text?: string, fraction?: number): void;
}

export interface ProgressOptions {
  stream?: { write(chunk: string): unknown; isTTY?: boolean; columns?: number };
  label?: string;
  tty?: boolean;
}

export function createProgress({ stream = process.stdout, label = '', tty = Boolean(stream.isTTY) }: ProgressOptions = {}): Progress {
  const start = performance.now();
  let lastDecile = -1;
  let lastDraw = 0;
  let lastLine = '';
  let finished = false;

  function render(fraction: number, text: string): string {
    const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    const filled = Math.round(f * BAR_WIDTH);
    const elapsed = (performance.now() - start) / 1000;
    const eta = f > 0.01 ? (elapsed * (1 - f)) / f : NaN;
    const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
    const pct = `${(f * 100).toFixed(0).padStart(3)}%`;
    const times = f >= 1 ? formatDuration(elapsed) : `${formatDuration(elapsed)} eta ${formatDuration(eta)}`;
    // On a terminal the line must fit its width: a wrapped line is redrawn as a trail of lines.
    const fixed = label.length + BAR_WIDTH + pct.length + times.length + 5;
    const room = tty ? Math.max(0, (stream.columns || 80) - 1 - fixed) : Infinity;
    const shown = text.length > room ? text.slice(0, Math.max(0, room - 1)) + '…' : text;
    return `${label}[${bar}] ${pct} ${shown} ${times}`;
  }

  function drawTty(line: string): void {
    // Pad with spaces so a shorter line fully covers the previous one.
    const pad = Math.max(0, lastLine.length - line.length);
    stream.write(`\r${line}${' '.repeat(pad)}`);
    lastLine = line;
  }

  return {
    update(fraction, text = '') {
      if (finished) return;
      const now = performance.now();
      if (tty) {
        if (now - lastDraw < 50) return; // at most ~20 redraws per second
        lastDraw = now;
        drawTty(render(fraction, text));
      } else {
        const decile = Math.floor(Math.min(1, Math.max(0, fraction)) * 10);
        if (decile > lastDecile && decile < 10) {
          lastDecile = decile;
          stream.write(`${render(fraction, text)}\n`);
        }
      }
    },
    done(text = '', fraction = 1) {
      if (finished) return;
      finished = true;
      const line = render(fraction, text);
      if (tty) {
        drawTty(line);
        stream.write('\n');
      } else {
        stream.write(`${line}\n`);
      }
    },
  };
}
