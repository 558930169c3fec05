/**
 * Identifier allow-list. Feature, group, view and model names end up as table and
 * column names, so they are checked here once and bound with knex's `??` later.
 */
export const IDENTIFIER = /^[a-z][a-z0-9_]{0,62}$/;

export function isIdentifier(value: unknown): value is string {
  return typeof value === 'string' && IDENTIFIER.test(value);
}

export function assertIdentifier(value: unknown, what: string): string {
  if (!isIdentifier(value)) {
    throw new TypeError(
      `${what} must match ${IDENTIFIER.source} (lower-case letter first, then lower-case letters, digits or _; at most 63 characters), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}
