/**
 * The worker process's Temporal Runtime: its logger (workers/logging.ts) and, when the
 * worker serves metrics, the SDK's Prometheus exporter on a loopback port that
 * workers/metrics-server.ts reads. The Runtime is a per-process singleton that must be
 * installed before the first connection or worker, so runPoolWorker installs it first.
 */
import { Runtime } from '@temporalio/worker';
import type { LogFormat, Logger, LogLevel } from '../core/log.ts';
import { sdkLogger, type LineWriter } from './logging.ts';
import { freeLoopbackPort } from './metrics-server.ts';

export interface WorkerRuntime {
  /** Where the SDK's exporter answers (loopback); undefined when metrics are off or the Runtime was installed before us. */
  sdkMetricsUrl: string | undefined;
}

export async function installWorkerRuntime(options: { level: LogLevel; format: LogFormat; metrics: boolean; log: Logger; write?: LineWriter }): Promise<WorkerRuntime> {
  const sdkPort = options.metrics ? await freeLoopbackPort() : undefined;
  try {
    Runtime.install({
      logger: sdkLogger(options.level, options.format, options.write),
      telemetryOptions: {
        // Core's native lines reach the same logger (warnings and errors only: its info is chatty).
        logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
        ...(sdkPort !== undefined
          ? {
              metrics: {
                // Prometheus conventions, as our series follow: seconds, unit suffixes, `_total` counters.
                prometheus: { bindAddress: `127.0.0.1:${sdkPort}`, useSecondsForDurations: true, unitSuffix: true, countersTotalSuffix: true },
              },
            }
          : {}),
      },
    });
  } catch (err) {
    // Only in a process that connected to Temporal before (a test, an embedding): the SDK keeps its own settings.
    options.log('the Temporal runtime was already installed in this process: SDK logs keep their format and SDK metrics are not served', { error: String(err) });
    return { sdkMetricsUrl: undefined };
  }
  return { sdkMetricsUrl: sdkPort !== undefined ? `http://127.0.0.1:${sdkPort}/metrics` : undefined };
}
