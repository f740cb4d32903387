// Counters, histograms and gauges in the Prometheus text format (version 0.0.4), enough for
// GET /metrics without a client library. Label values come only from the server's own model
// names and status codes, never from what a client sends, so the series stay few.

type Labels = Record<string, string>;

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function keyOf(labels: Labels): string {
  return Object.values(labels).join('\u0000');
}

/**
 * Series by label values. A request's labels are the server's own few objects, made once: a
 * lookup by object identity comes first and skips building the key string (the key join and its
 * string hash cost about as much as the rest of counting a request). Label objects must not be
 * changed after their first use; fresh objects work too, found by key and forgotten with them.
 */
class SeriesMap<S extends { labels: Labels }> {
  private readonly byKey = new Map<string, S>();
  private readonly byObject = new WeakMap<Labels, S>();

  get(labels: Labels): S | undefined {
    let s = this.byObject.get(labels);
    if (s === undefined) {
      s = this.byKey.get(keyOf(labels));
      if (s !== undefined) this.byObject.set(labels, s);
    }
    return s;
  }

  add(s: S): S {
    this.byKey.set(keyOf(s.labels), s);
    this.byObject.set(s.labels, s);
    return s;
  }

  values(): IterableIterator<S> {
    return this.byKey.values();
  }
}

function formatValue(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

export class Counter {
  private readonly series = new SeriesMap<{ labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels, by = 1): void {
    const s = this.series.get(labels);
    if (s) s.value += by;
    else this.series.add({ labels, value: by });
  }

  get(labels: Labels): number {
    return this.series.get(labels)?.value ?? 0;
  }

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`,
      ...[...this.series.values()].map((s) => `${this.name}${labelText(s.labels)} ${formatValue(s.value)}`)];
  }
}

interface HistogramSeries {
  labels: Labels;
  counts: Float64Array; // per bucket, not cumulative; the last is +Inf
  sum: number;
  count: number;
}

export class Histogram {
  private readonly series = new SeriesMap<HistogramSeries>();
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {}

  observe(labels: Labels, value: number): void {
    const s = this.series.get(labels) ??
      this.series.add({ labels, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 });
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  /**
   * Adds observations counted elsewhere (the native socket path): from `v` at `at`, their sum,
   * their count and a count per bucket (not cumulative, +Inf last). Returns the index after them.
   */
  add(labels: Labels, v: Float64Array, at: number): number {
    const sum = v[at];
    const count = v[at + 1];
    const n = this.buckets.length + 1;
    if (count > 0) {
      const s = this.series.get(labels) ??
        this.series.add({ labels, counts: new Float64Array(n), sum: 0, count: 0 });
      for (let i = 0; i < n; i++) s.counts[i] += v[at + 2 + i];
      s.sum += sum;
      s.count += count;
    }
    return at + 2 + n;
  }

  /** Observations so far in one series: count, sum, and per upper bound the cumulative count. */
  snapshot(labels: Labels): { count: number; sum: number; buckets: Map<number, number> } {
    const s = this.series.get(labels);
    const buckets = new Map<number, number>();
    let cumulative = 0;
    this.buckets.forEach((b, i) => {
      cumulative += s?.counts[i] ?? 0;
      buckets.set(b, cumulative);
    });
    return { count: s?.count ?? 0, sum: s?.sum ?? 0, buckets };
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((b, i) => {
        cumulative += s.counts[i];
        lines.push(`${this.name}_bucket${labelText(s.labels, ['le', formatValue(b)])} ${cumulative}`);
      });
      lines.push(`${this.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${formatValue(s.sum)}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

/** A gauge read when scraped (queue depths, memory): nothing to keep up to date. */
export class Gauge {
  constructor(readonly name: string, readonly help: string, private readonly read: () => { labels: Labels; value: number }[]) {}

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`,
      ...this.read().map((s) => `${this.name}${labelText(s.labels)} ${formatValue(s.value)}`)];
  }
}

export function renderMetrics(metrics: { render(): string[] }[]): string {
  return metrics.map((m) => m.render().join('\n')).join('\n') + '\n';
}

/** 1, 2, 4, ... up to at least `max`: the bucket bounds of the batch-size histograms. */
export function powersOfTwo(max: number): number[] {
  const out: number[] = [];
  for (let b = 1; b < max * 2; b *= 2) out.push(b);
  return out;
}

/**
 * Several servers' metrics texts (renderMetrics output, one per cluster worker) as one: every
 * sample summed over the texts that have it (counters, histogram buckets, sums and counts, queue
 * depths, requests in flight and resident memory all add up), in first-seen order.
 */
export function sumMetricsTexts(texts: string[]): string {
  const families = new Map<string, { header: string[]; samples: Map<string, number> }>();
  for (const text of texts) {
    let family: { header: string[]; samples: Map<string, number> } | undefined;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('# ')) {
        const name = line.split(' ')[2];
        family = families.get(name);
        if (!family) families.set(name, (family = { header: [], samples: new Map() }));
        if (!family.header.includes(line)) family.header.push(line);
        continue;
      }
      const space = line.lastIndexOf(' ');
      const key = line.slice(0, space);
      const raw = line.slice(space + 1);
      const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
      if (!family) families.set('', (family = { header: [], samples: new Map() }));
      family.samples.set(key, (family.samples.get(key) ?? 0) + value);
    }
  }
  const out: string[] = [];
  for (const { header, samples } of families.values()) {
    out.push(...header);
    for (const [key, value] of samples) out.push(`${key} ${formatValue(value)}`);
  }
  return out.join('\n') + '\n';
}
