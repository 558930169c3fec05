/**
 * One-line structured logs for processes we own (CLI, workers, services). Inside
 * workflows and activities use the SDK loggers instead: a worker process routes them
 * (and the SDK's own lines) through `formatLogLine` too (workers/logging.ts).
 *
 * Two formats: `text` (`12:00:00.000 [component] message {attrs}`, for people at a
 * terminal) and `json` (one object a line: time, level, component, message, then the
 * attributes, for log shippers). Interactive commands print text; worker processes
 * default to JSON (FTI_LOG_FORMAT).
 */
export type Logger = (message: string, attrs?: Record<string, unknown>) => void;

export type LogFormat = 'json' | 'text';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogRecord {
  time: Date;
  level: LogLevel;
  component: string;
  message: string;
  attrs?: Record<string, unknown>;
}

/** Keys a record's attributes may not take over in a JSON line. */
const RESERVED = new Set(['time', 'level', 'component', 'message']);

export function createLogger(component: string, write: (line: string) => void = (l) => console.log(l), format: LogFormat = 'text'): Logger {
  return (message, attrs) => write(formatLogLine({ time: new Date(), level: 'info', component, message, attrs }, format));
}

/** One record as one line (no newline) in `format`. */
export function formatLogLine(record: LogRecord, format: LogFormat): string {
  const attrs = record.attrs && Object.keys(record.attrs).length ? record.attrs : undefined;
  if (format === 'text') {
    const time = record.time.toISOString().slice(11, 23);
    const level = record.level === 'info' ? '' : ` ${record.level.toUpperCase()}`;
    return `${time}${level} [${record.component}] ${record.message}${attrs ? ` ${safeStringify(attrs)}` : ''}`;
  }
  const line: Record<string, unknown> = { time: record.time.toISOString(), level: record.level, component: record.component, message: record.message };
  // An attribute named like a field is kept under `attr.<key>` rather than overwriting the field.
  for (const [key, value] of Object.entries(attrs ?? {})) line[RESERVED.has(key) ? `attr.${key}` : key] = value;
  return safeStringify(line);
}

/**
 * JSON.stringify that never throws: errors become `{ name, message, type?, cause?, stack }`
 * (JSON.stringify gives `{}` for them), bigints become strings; a value with a cycle is
 * written again with every repeated object as `"[circular]"`.
 */
export function safeStringify(value: unknown): string {
  const plain = (_key: string, v: unknown): unknown => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? errorFields(v) : v);
  try {
    return JSON.stringify(value, plain);
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(value, (key, v: unknown) => {
      const out = plain(key, v);
      if (out !== null && typeof out === 'object') {
        if (seen.has(out)) return '[circular]';
        seen.add(out);
      }
      return out;
    });
  }
}

function errorFields(err: Error, depth = 0): Record<string, unknown> {
  const fields: Record<string, unknown> = { name: err.name, message: err.message };
  // ApplicationFailure and our FtiError carry a `type`; Temporal failures a `cause`.
  const extra = err as Error & { type?: unknown; cause?: unknown };
  if (typeof extra.type === 'string') fields.type = extra.type;
  if (extra.cause instanceof Error && depth < 4) fields.cause = errorFields(extra.cause, depth + 1);
  if (err.stack) fields.stack = err.stack;
  return fields;
}
