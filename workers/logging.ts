/**
 * A worker process's logs: one format (FTI_LOG_FORMAT, JSON by default) for our own
 * lines, the lines of activities and workflows (the SDK's context loggers, with their
 * workflowId, workflowRunId and activityType), the SDK's own lines, and Core's native
 * ones (forwarded to the same logger). All of them go to stdout, one record a line,
 * formatted by core/log.ts.
 */
import util from 'node:util';
import type { LogLevel as SdkLogLevel } from '@temporalio/common';
import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import { createLogger, formatLogLine, LOG_LEVELS, type LogFormat, type Logger, type LogLevel } from '../core/log.ts';

export type LineWriter = (line: string) => void;

/** Writes straight to stdout: never through console.log, which a JSON worker routes back here. */
export const stdoutLine: LineWriter = (line) => {
  process.stdout.write(`${line}\n`);
};

/** The worker's own logger (component `worker:<pool>`). */
export function workerLogger(component: string, format: LogFormat, write: LineWriter = stdoutLine): Logger {
  return createLogger(component, write, format);
}

/**
 * The Runtime logger: the SDK hands it every activity, workflow, worker and (forwarded)
 * Core line. The component is the SDK's (activity, workflow, worker, core); the rest of
 * the metadata become attributes.
 */
export function sdkLogger(level: LogLevel, format: LogFormat, write: LineWriter = stdoutLine): DefaultLogger {
  return new DefaultLogger(level.toUpperCase() as SdkLogLevel, (entry: LogEntry) => {
    const { sdkComponent, ...attrs } = entry.meta ?? {};
    write(
      formatLogLine(
        {
          time: new Date(Number(entry.timestampNanos / 1_000_000n)),
          level: toLevel(entry.level),
          component: typeof sdkComponent === 'string' ? sdkComponent : 'temporal',
          message: entry.message,
          attrs,
        },
        format,
      ),
    );
  });
}

/**
 * In a JSON worker, what libraries print with console.* (TensorFlow.js's banners, a
 * stray warning) becomes a record too (component `console`), so every stdout line
 * parses. console.error and console.warn keep their levels.
 */
export function routeConsole(format: LogFormat, write: LineWriter = stdoutLine): void {
  if (format !== 'json') return;
  const levels: Array<[keyof Console & ('log' | 'info' | 'debug' | 'warn' | 'error'), LogLevel]> = [
    ['log', 'info'],
    ['info', 'info'],
    ['debug', 'debug'],
    ['warn', 'warn'],
    ['error', 'error'],
  ];
  for (const [method, level] of levels) {
    console[method] = (...args: unknown[]) => write(formatLogLine({ time: new Date(), level, component: 'console', message: util.format(...args) }, format));
  }
}

function toLevel(level: string): LogLevel {
  const lower = level.toLowerCase();
  return (LOG_LEVELS as readonly string[]).includes(lower) ? (lower as LogLevel) : 'info';
}
