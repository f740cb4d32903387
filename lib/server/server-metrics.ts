// What GET /metrics reports: requests by model and status, request latency, batch sizes (rows
// and merged requests per predict call), queue depth, requests in flight and resident memory.

import { Counter, Gauge, Histogram, powersOfTwo, renderMetrics } from './metrics.js';

// 50 us to 10 s: a batch-1 request on this machine is ~100 us end to end, a queued one under
// overload can take seconds.
const LATENCY_BUCKETS = [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10];

export class ServerMetrics {
  readonly requests = new Counter('mlpkit_requests_total',
    'HTTP requests answered, by model (empty for other endpoints and unknown models) and status code.');
  readonly latency = new Histogram('mlpkit_request_duration_seconds',
    'Predict requests: time from the request line to the end of the response, queueing included.', LATENCY_BUCKETS);
  readonly batchRows: Histogram;
  readonly batchRequests: Histogram;
  private readonly gauges: Gauge[];
  /** Called before each render: brings in what is counted elsewhere (the native socket path). */
  collect: (() => void) | null = null;
  private readonly statusLabels = new Map<string, Map<string, { model: string; status: string }>>(); // one label object per (model, status)

  constructor(
    maxBatchRows: number,
    depths: () => { model: string; depth: number }[],
    inFlight: () => number,
    bufferedBodyBytes: () => number,
  ) {
    this.batchRows = new Histogram('mlpkit_batch_rows', 'Rows per predict call.', powersOfTwo(Math.max(maxBatchRows, 1024)));
    this.batchRequests = new Histogram('mlpkit_batch_requests', 'Requests merged into one predict call.', powersOfTwo(Math.max(maxBatchRows, 1024)));
    this.gauges = [
      new Gauge('mlpkit_queue_depth', 'Requests waiting for a predict call, by model.',
        () => depths().map((d) => ({ labels: { model: d.model }, value: d.depth }))),
      new Gauge('mlpkit_requests_in_flight', 'Requests received and not yet answered.', () => [{ labels: {}, value: inFlight() }]),
      new Gauge('mlpkit_buffered_body_bytes', 'Bytes of request bodies being read, over all connections.',
        () => [{ labels: {}, value: bufferedBodyBytes() }]),
      new Gauge('process_resident_memory_bytes', 'Resident set size of this process.', () => [{ labels: {}, value: process.memoryUsage.rss() }]),
    ];
  }

  /**
   * One answered request: model '' for other endpoints, unknown models and requests refused
   * before they reached the handler (bad HTTP, slow headers); status a code or 'aborted'.
   */
  countRequest(model: string, status: string, by = 1): void {
    // Two lookups by the strings as given, not one by a key built per request.
    let byStatus = this.statusLabels.get(model);
    if (!byStatus) this.statusLabels.set(model, (byStatus = new Map()));
    let labels = byStatus.get(status);
    if (!labels) byStatus.set(status, (labels = { model, status }));
    this.requests.inc(labels, by);
  }

  render(): string {
    this.collect?.();
    return renderMetrics([this.requests, this.latency, this.batchRows, this.batchRequests, ...this.gauges]);
  }
}
