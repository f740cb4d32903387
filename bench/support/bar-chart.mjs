// Hand-written SVG grouped bar chart on a log10 scale: a grid of panels, each with groups of
// bars (one bar per series, the same colours in every panel), one legend for the figure.
// A null value (a peer that did not run) leaves a gap marked "n/a", an undefined one (a bar that
// makes no sense there) a plain gap. Returns the SVG string.

function escapeXml(s) {
  return String(s).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]);
}

const f = (v) => v.toFixed(1);

/** 1, 10, 100, 1k, 10k, ... for decade ticks. */
function decadeLabel(e) {
  const units = ['', 'k', 'M', 'G', 'T'];
  if (e < 0) return `1e${e}`;
  const u = Math.min(Math.floor(e / 3), units.length - 1);
  return `${10 ** (e - u * 3)}${units[u]}`;
}

function panelSvg(panel, series, x0, y0, width, height, yLabel) {
  const m = { left: 56, right: 10, top: 26, bottom: 40 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const values = panel.groups.flatMap((g) => g.values).filter((v) => Number.isFinite(v) && v > 0);
  let e0 = values.length ? Math.floor(Math.log10(Math.min(...values))) : 0;
  let e1 = values.length ? Math.ceil(Math.log10(Math.max(...values))) : 1;
  if (e1 === e0) e1 = e0 + 1;
  const sy = (v) => y0 + m.top + ph - ((Math.log10(v) - e0) / (e1 - e0)) * ph;
  const base = y0 + m.top + ph;
  const out = [];
  out.push(`<text x="${f(x0 + m.left + pw / 2)}" y="${f(y0 + 16)}" text-anchor="middle" font-weight="bold">${escapeXml(panel.title)}</text>`);
  for (let e = e0; e <= e1; e++) {
    const y = sy(10 ** e);
    out.push(`<line x1="${x0 + m.left}" x2="${x0 + m.left + pw}" y1="${f(y)}" y2="${f(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 + m.left - 6}" y="${f(y + 4)}" text-anchor="end">${decadeLabel(e)}</text>`);
    if (e < e1) {
      for (let k = 2; k <= 9; k++) {
        const ym = sy(k * 10 ** e);
        out.push(`<line x1="${x0 + m.left - 3}" x2="${x0 + m.left}" y1="${f(ym)}" y2="${f(ym)}" stroke="black"/>`);
      }
    }
  }
  const groupWidth = pw / panel.groups.length;
  const barWidth = Math.min(22, (groupWidth * 0.8) / series.length);
  panel.groups.forEach((group, gi) => {
    const gx = x0 + m.left + gi * groupWidth + (groupWidth - barWidth * series.length) / 2;
    group.values.forEach((v, si) => {
      const bx = gx + si * barWidth;
      if (Number.isFinite(v) && v > 0) {
        const top = sy(v);
        out.push(
          `<rect x="${f(bx)}" y="${f(top)}" width="${f(barWidth - 1)}" height="${f(base - top)}" fill="${series[si].color}">` +
            `<title>${escapeXml(`${series[si].label}, ${group.label}: ${v.toPrecision(3)} ${yLabel}`)}</title></rect>`,
        );
      } else if (v !== undefined) {
        out.push(
          `<text x="${f(bx + barWidth / 2)}" y="${f(base - 4)}" text-anchor="middle" font-size="8" fill="#888"` +
            ` transform="rotate(-90 ${f(bx + barWidth / 2)} ${f(base - 4)})" dy="3">n/a</text>`,
        );
      }
    });
    out.push(`<text x="${f(x0 + m.left + (gi + 0.5) * groupWidth)}" y="${f(base + 16)}" text-anchor="middle">${escapeXml(group.label)}</text>`);
  });
  out.push(`<rect x="${x0 + m.left}" y="${y0 + m.top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`);
  out.push(
    `<text transform="translate(${f(x0 + 14)} ${f(y0 + m.top + ph / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  );
  if (panel.xLabel) {
    out.push(`<text x="${f(x0 + m.left + pw / 2)}" y="${f(base + 32)}" text-anchor="middle" fill="#444">${escapeXml(panel.xLabel)}</text>`);
  }
  return out.join('\n');
}

/**
 * groupedBarChartSvg({ title, subtitle, yLabel, series, panels, columns })
 *   series: [{ label, color }]
 *   panels: [{ title, xLabel?, yLabel? (the panel's own unit), groups: [{ label, values: [number | null | undefined, one per series] }] }]
 */
export function groupedBarChartSvg({ title, subtitle = '', yLabel = '', series, panels, columns = 2, panelWidth = 480, panelHeight = 300 }) {
  const rows = Math.ceil(panels.length / columns);
  const width = Math.max(1, Math.min(columns, panels.length)) * panelWidth + 20;
  // Legend: one swatch per series, centred, on as many lines as the width needs.
  // ~6.5 px per character at 11 px: long labels must not run into the next swatch.
  const itemWidth = Math.max(150, 30 + 6.5 * Math.max(...series.map((s) => String(s.label).length)));
  const perLine = Math.max(1, Math.min(series.length, Math.floor((width - 20) / itemWidth)));
  const legendLines = Math.ceil(series.length / perLine);
  const legendHeight = 26 + 18 * (legendLines - 1);
  const top = 52 + legendHeight;
  const height = top + rows * panelHeight + 10;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${f(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${f(width / 2)}" y="40" text-anchor="middle" fill="#444">${escapeXml(subtitle)}</text>`,
  ];
  series.forEach((s, i) => {
    const line = Math.floor(i / perLine);
    const onLine = Math.min(perLine, series.length - line * perLine);
    const lx = (width - itemWidth * onLine) / 2 + (i % perLine) * itemWidth;
    const ly = 52 + 18 * line;
    out.push(`<rect x="${f(lx)}" y="${ly}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${f(lx + 17)}" y="${ly + 10}">${escapeXml(s.label)}</text>`);
  });
  panels.forEach((panel, i) => {
    const px = 10 + (i % columns) * panelWidth;
    const py = top + Math.floor(i / columns) * panelHeight;
    out.push(panelSvg(panel, series, px, py, panelWidth, panelHeight, panel.yLabel ?? yLabel));
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
