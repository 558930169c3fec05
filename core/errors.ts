/**
 * The `type` strings of every non-retryable ApplicationFailure the project raises,
 * kept in one module so workflows, activities, the CLI and tests agree on them.
 * Plain `Error`s are retried by Temporal; these are not.
 */
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
