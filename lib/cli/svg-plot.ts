// Hand-written SVG line plot for loss curves: linear x axis, log10 y axis, tick marks, grid
// lines, axis labels, a title and a legend when there are several series. No dependency: the
// CLI's `train` writes one, and so does the neural-field example.

export interface PlotPoint {
  x: number;
  y: number;
}

export interface PlotSeries {
  label?: string;
  color?: string;
  points: PlotPoint[];
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** The colour of a single curve (lossCurveSvg). */
  color?: string;
}

const COLORS = ['#d94801', '#08519c', '#238b45', '#6a51a3'];

function escapeXml(s: string): string {
  return String(s).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** "Nice" linear tick step (1, 2 or 5 times a power of ten) giving about `count` ticks. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = raw / pow;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
}

function formatPow10(e: number): string {
  // 10^e written with a superscript tspan; plain numbers for small exponents read better.
  if (e >= -2 && e <= 3) return escapeXml(String(Number((10 ** e).toPrecision(1))));
  return `10<tspan dy="-6" font-size="9">${e}</tspan>`;
}

/** Keep at most `max` points, evenly spaced in index, always keeping the first and last. */
function decimate(points: PlotPoint[], max: number): PlotPoint[] {
  if (points.length <= max) return points;
  const out: PlotPoint[] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.round((i * (points.length - 1)) / (max - 1))]);
  return out;
}

/** Curves on one set of axes; points with non-positive or non-finite y are skipped (log scale). */
export function lineChartSvg(series: PlotSeries[], options: PlotOptions = {}): string {
  const { title = 'Loss', xLabel = 'x', yLabel = 'y', width = 640, height = 400 } = options;
  const curves = series.map((s, i) => ({
    label: s.label ?? '',
    color: s.color ?? COLORS[i % COLORS.length],
    points: decimate(s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.y > 0), 2000),
  }));
  const all = curves.flatMap((c) => c.points);
  const m = { left: 72, right: 24, top: 40, bottom: 56 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;

  const xs = all.map((p) => p.x);
  const ys = all.map((p) => Math.log10(p.y));
  const x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  if (x1 === x0) x1 = x0 + 1;
  // Whole decades on the y axis so every tick is a power of ten.
  const e0 = ys.length ? Math.floor(Math.min(...ys)) : -3;
  let e1 = ys.length ? Math.ceil(Math.max(...ys)) : 0;
  if (e1 === e0) e1 = e0 + 1;

  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (ly: number) => m.top + ph - ((ly - e0) / (e1 - e0)) * ph;
  const f = (v: number) => v.toFixed(1);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${f(m.left + pw / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  );

  // y axis: decades with labels, minor ticks at 2..9 times each decade.
  for (let e = e0; e <= e1; e++) {
    const y = sy(e);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y)}" y2="${f(y)}" stroke="#ddd"/>`);
    parts.push(`<line x1="${m.left - 6}" x2="${m.left}" y1="${f(y)}" y2="${f(y)}" stroke="black"/>`);
    parts.push(`<text x="${m.left - 9}" y="${f(y + 4)}" text-anchor="end">${formatPow10(e)}</text>`);
    if (e < e1) {
      for (let k = 2; k <= 9; k++) {
        const ym = sy(e + Math.log10(k));
        parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${f(ym)}" y2="${f(ym)}" stroke="#f2f2f2"/>`);
        parts.push(`<line x1="${m.left - 3}" x2="${m.left}" y1="${f(ym)}" y2="${f(ym)}" stroke="black"/>`);
      }
    }
  }

  // x axis: nice linear ticks; whole steps when every x is whole (epochs have no 1.5).
  const whole = xs.every(Number.isInteger);
  const step = whole ? Math.max(1, niceStep(x1 - x0, 8)) : niceStep(x1 - x0, 8);
  for (let t = Math.ceil(x0 / step) * step; t <= x1 + step * 1e-9; t += step) {
    const x = sx(t);
    parts.push(`<line x1="${f(x)}" x2="${f(x)}" y1="${m.top}" y2="${m.top + ph}" stroke="#eee"/>`);
    parts.push(`<line x1="${f(x)}" x2="${f(x)}" y1="${m.top + ph}" y2="${m.top + ph + 6}" stroke="black"/>`);
    parts.push(`<text x="${f(x)}" y="${m.top + ph + 20}" text-anchor="middle">${escapeXml(String(Number(t.toPrecision(6))))}</text>`);
  }

  // Plot frame, the curves, the legend, axis labels.
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`);
  for (const c of curves) {
    if (!c.points.length) continue;
    const d = c.points.map((p, i) => `${i ? 'L' : 'M'}${f(sx(p.x))},${f(sy(Math.log10(p.y)))}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${c.color}" stroke-width="1.8" stroke-linejoin="round"/>`);
    // A line through fewer than a handful of points hides them (one point draws nothing).
    if (c.points.length < 6) {
      for (const p of c.points) parts.push(`<circle cx="${f(sx(p.x))}" cy="${f(sy(Math.log10(p.y)))}" r="3" fill="${c.color}"/>`);
    }
  }
  const labelled = curves.filter((c) => c.label);
  labelled.forEach((c, i) => {
    const ly = m.top + 16 + i * 16;
    parts.push(`<line x1="${m.left + pw - 120}" x2="${m.left + pw - 100}" y1="${ly - 4}" y2="${ly - 4}" stroke="${c.color}" stroke-width="2"/>`);
    parts.push(`<text x="${m.left + pw - 94}" y="${ly}">${escapeXml(c.label)}</text>`);
  });
  parts.push(`<text x="${f(m.left + pw / 2)}" y="${height - 14}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  parts.push(
    `<text transform="translate(18 ${f(m.top + ph / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  );
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** One curve: lossCurveSvg(points, { title, xLabel, yLabel, width, height, color }). */
export function lossCurveSvg(points: PlotPoint[], options: PlotOptions = {}): string {
  return lineChartSvg([{ points, color: options.color }], options);
}
