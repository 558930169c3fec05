/**
 * The `type` strings of every non-retryable ApplicationFailure the project raises,
 * kept in one module so workflows, activities, the CLI and tests agree on them.
 * Plain `Error`s are retried by Temporal; these are not.
 *
 * Also the one place that builds InvalidInput errors and formats zod issues.
 */
import type { z } from 'zod';

export const FailureType = {
  /** A workflow or activity input failed validation. */
  InvalidInput: 'FtiInvalidInput',
  /** A name that is not registered (feature group, view, model, alias). */
  NotFound: 'FtiNotFound',
  /** A definition conflicts with what the registry already holds. */
  Conflict: 'FtiConflict',
  /** Rows failed validation under the strict policy; nothing was committed. */
  ValidationFailed: 'FtiValidationFailed',
  /** A stored artifact does not match its recorded hash. */
  IntegrityError: 'FtiIntegrityError',
  /** A workflow was started on a task queue it cannot run on. */
  WrongTaskQueue: 'FtiWrongTaskQueue',
  /** No worker picked an activity up within its schedule-to-start timeout (e.g. no GPU worker is running). */
  NoWorker: 'FtiNoWorker',
} as const;

export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/**
 * A domain error raised below the Temporal layer (registry, store, ml). Activities
 * translate it into a non-retryable ApplicationFailure of the same type.
 */
export class FtiError extends Error {
  constructor(
    readonly type: FailureType,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = type;
  }
}

/** The part of a zod issue the formatter reads (zod's own type, structurally). */
export interface IssueLike {
  readonly path: ReadonlyArray<PropertyKey>;
  readonly message: string;
}

/**
 * The one zod-issue formatter: `path: message; path: message`. `root` names the
 * value itself, for an issue with an empty path. `prefix` goes before every path
 * (e.g. `keys[2]`).
 */
export function formatIssues(issues: ReadonlyArray<IssueLike>, { root = '(root)', prefix }: { root?: string; prefix?: string } = {}): string {
  return issues
    .map((i) => {
      const path = [...(prefix ? [prefix] : []), ...i.path.map(String)].join('.');
      return `${path || root}: ${i.message}`;
    })
    .join('; ');
}

/** Bad input that retrying cannot fix: a non-retryable FtiInvalidInput once it reaches an activity. */
export function invalid(message: string, details?: Record<string, unknown>): FtiError {
  return new FtiError(FailureType.InvalidInput, message, details);
}

/** "invalid <what>: <every problem>", from zod issues. */
export function invalidInput(what: string, issues: ReadonlyArray<IssueLike>, { root }: { root?: string } = {}): FtiError {
  const problems = formatIssues(issues, { root });
  return invalid(`invalid ${what}: ${problems}`, { issues: problems });
}

/**
 * Parses a workflow's one input object. `problem` is the message a bad input fails
 * the workflow with (and the client refuses it with, before starting anything).
 */
export function parseWorkflowInput<S extends z.ZodType>(workflow: string, schema: S, input: unknown): { ok: true; value: z.output<S> } | { ok: false; problem: string } {
  const parsed = schema.safeParse(input ?? {});
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, problem: `invalid ${workflow} input: ${formatIssues(parsed.error.issues, { root: 'input' })}` };
}

/** `schema.parse`, failing with invalidInput (one readable line per issue). */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string, options: { root?: string } = {}): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalidInput(what, parsed.error.issues, options);
}
