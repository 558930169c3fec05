/**
 * A worker's Prometheus endpoint: GET /metrics answers our registry (activities/
 * observability.ts, plus the process's default metrics) followed by the Temporal SDK's
 * metrics (pollers, task slots, activity and workflow task latencies, RPCs), so one
 * scrape target per worker gives both.
 *
 * The SDK's metrics live in its native core, which can only export them through an
 * HTTP server of its own: it binds a free loopback port (never reachable from
 * elsewhere) and this server reads it on each scrape. Our series are `fti_*`, the SDK's
 * `temporal_*`: the two texts never declare the same metric.
 */
import http from 'node:http';
import net from 'node:net';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

export interface MetricsServer {
  /** http://host:port/metrics */
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  host: string;
  /** 0: a free port. */
  port: number;
  registry: Registry;
  /** The SDK exporter's URL on loopback; unset: ours only. */
  sdkMetricsUrl?: string;
  /** How long a scrape waits for the SDK's text. */
  sdkTimeoutMs?: number;
}

const withDefaults = new WeakSet<Registry>();

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, sdkMetricsUrl, sdkTimeoutMs = 2_000 } = options;
  if (!withDefaults.has(registry)) {
    // The process's CPU, memory, heap and event-loop lag (fti_worker_process_resident_memory_bytes, …).
    collectDefaultMetrics({ register: registry, prefix: 'fti_worker_' });
    withDefaults.add(registry);
  }
  const sdkUp =
    (registry.getSingleMetric('fti_worker_temporal_metrics_up') as Gauge | undefined) ??
    new Gauge({ name: 'fti_worker_temporal_metrics_up', help: '1 when the last scrape read the Temporal SDK metrics, 0 when it could not', registers: [registry] });

  const render = async (): Promise<string> => {
    let sdk = '';
    if (sdkMetricsUrl) {
      try {
        const response = await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(sdkTimeoutMs) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        sdk = await response.text();
        sdkUp.set(1);
      } catch (err) {
        sdkUp.set(0);
        sdk = `# Temporal SDK metrics unavailable: ${String(err).replace(/\s+/g, ' ')}\n`;
      }
    }
    const ours = await registry.metrics();
    return `${ours}${ours.endsWith('\n') ? '' : '\n'}${sdk}`;
  };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    render().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('the metrics server has no address');
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A loopback port that was free a moment ago, for the SDK's exporter (which cannot report a port it picked itself). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
