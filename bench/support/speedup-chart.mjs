// Speedup against density on log-log axes, as SVG text: the sparse benches' charts
// (bench/results/sparse.svg, sparse-modes.svg). Points sit at their measured density; curves
// (the ideal 1/density, a ceiling) are drawn from their formulas; a legend and notes on the right.

function escapeXml(s) {
  return String(s).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]);
}

const ratio = (r) => `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;

/**
 * speedupChart({ title, subtitle, series, curves, ticks, notes }) -> SVG text
 *   series: [{ label, color, points: [{ x: density, y: speedup, tip? }], square?, width?, annotate? }]
 *   curves: [{ label, color, dash, fn: (density) => speedup }]
 *   ticks:  [{ x, y, color, label }] short horizontal marks (targets), one legend line for all
 *           (ticksLabel)
 *   notes:  lines of small text under the legend
 */
export function speedupChart({ title, subtitle, series, curves = [], ticks = [], ticksLabel = '', notes = [] }) {
  const W = 860;
  const H = 520;
  const m = { left: 70, right: 250, top: 66, bottom: 56 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const f = (v) => v.toFixed(1);
  // x: density, log, 1% .. 100%; y: speedup, log2, at least 0.5 .. 64.
  const xMin = Math.log10(0.01);
  const xMax = 0;
  const values = series.flatMap((s) => s.points.map((p) => p.y)).filter((v) => Number.isFinite(v) && v > 0);
  const yLo = Math.min(-1, Math.floor(Math.log2(Math.min(...values, 1))));
  const yHi = Math.max(6, Math.ceil(Math.log2(Math.max(...values, 1))));
  const sx = (d) => m.left + ((Math.log10(d) - xMin) / (xMax - xMin)) * pw;
  const sy = (v) => m.top + ph - ((Math.log2(v) - yLo) / (yHi - yLo)) * ph;
  const clampY = (v) => Math.min(Math.max(v, 2 ** yLo), 2 ** yHi);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${f(W / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${f(W / 2)}" y="40" text-anchor="middle" fill="#444">${escapeXml(subtitle)}</text>`,
    `<defs><clipPath id="plot"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath></defs>`,
  ];
  for (const d of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]) {
    const x = sx(d);
    out.push(`<line x1="${f(x)}" x2="${f(x)}" y1="${m.top}" y2="${m.top + ph}" stroke="#ddd"/>`);
    out.push(`<text x="${f(x)}" y="${m.top + ph + 16}" text-anchor="middle">${d * 100}%</text>`);
  }
  for (let e = yLo; e <= yHi; e++) {
    const y = sy(2 ** e);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y)}" y2="${f(y)}" stroke="${e === 0 ? '#999' : '#ddd'}"/>`);
    out.push(`<text x="${m.left - 6}" y="${f(y + 4)}" text-anchor="end">${2 ** e}x</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`);
  out.push(`<text x="${f(m.left + pw / 2)}" y="${H - 14}" text-anchor="middle">active hidden units (density, log scale)</text>`);
  out.push(`<text transform="translate(18 ${f(m.top + ph / 2)}) rotate(-90)" text-anchor="middle">speedup over dense float32 (log scale)</text>`);

  for (const c of curves) {
    const pts = [];
    for (let k = 0; k <= 100; k++) {
      const d = 10 ** (xMin + (k / 100) * (xMax - xMin));
      pts.push(`${f(sx(d))},${f(sy(clampY(c.fn(d))))}`);
    }
    out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${c.color}" stroke-width="1.5"${c.dash ? ` stroke-dasharray="${c.dash}"` : ''} clip-path="url(#plot)"/>`);
  }
  for (const s of series) {
    const pts = s.points
      .filter((p) => Number.isFinite(p.y) && p.y > 0)
      .map((p) => ({ ...p, px: sx(p.x), py: sy(clampY(p.y)) }));
    const width = s.width ?? (s.square ? 1.2 : 2);
    if (pts.length > 1) out.push(`<polyline points="${pts.map((p) => `${f(p.px)},${f(p.py)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="${width}"/>`);
    for (const p of pts) {
      const tip = `<title>${escapeXml(p.tip ?? `${s.label}: ${ratio(p.y)} at ${(p.x * 100).toPrecision(3)}% active`)}</title>`;
      out.push(
        s.square
          ? `<rect x="${f(p.px - 3)}" y="${f(p.py - 3)}" width="6" height="6" fill="${s.color}">${tip}</rect>`
          : `<circle cx="${f(p.px)}" cy="${f(p.py)}" r="3.5" fill="${s.color}">${tip}</circle>`,
      );
      if (s.annotate && p.x < 0.9) out.push(`<text x="${f(p.px + 5)}" y="${f(p.py - 6)}" fill="${s.color}" font-size="10">${ratio(p.y)}</text>`);
    }
  }
  // Targets as ticks only (their values are in the legend; text here would cross the curves).
  for (const t of ticks) {
    out.push(`<line x1="${f(sx(t.x) - 9)}" x2="${f(sx(t.x) + 9)}" y1="${f(sy(t.y))}" y2="${f(sy(t.y))}" stroke="${t.color}" stroke-width="2"><title>${escapeXml(t.label)}</title></line>`);
  }

  const lx = m.left + pw + 16;
  let ly = m.top + 8;
  const legend = (draw, text) => {
    out.push(draw(lx, ly));
    out.push(`<text x="${lx + 30}" y="${ly + 4}">${escapeXml(text)}</text>`);
    ly += 20;
  };
  const lineKey = (color, dash, width = 2) => (x, y) => `<line x1="${x}" x2="${x + 24}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
  for (const s of series) {
    legend((x, y) => `${lineKey(s.color, '', s.width ?? (s.square ? 1.2 : 2))(x, y)}${s.square ? `<rect x="${x + 9}" y="${y - 3}" width="6" height="6" fill="${s.color}"/>` : `<circle cx="${x + 12}" cy="${y}" r="3.5" fill="${s.color}"/>`}`, s.label);
  }
  for (const c of curves) legend(lineKey(c.color, c.dash, 1.5), c.label);
  if (ticks.length > 0) {
    legend((x, y) => `<line x1="${x + 3}" x2="${x + 21}" y1="${y}" y2="${y}" stroke="${ticks[0].color}" stroke-width="2"/>`, ticksLabel);
  }
  ly += 10;
  for (const note of notes) {
    out.push(`<text x="${lx}" y="${ly}" fill="#444" font-size="10">${escapeXml(note)}</text>`);
    ly += 14;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
