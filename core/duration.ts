/** Lengths such as `30s`, `30m`, `2h`, `7d`: parsed once, shown as written. */
export type Duration = `${number}${'s' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^([1-9][0-9]{0,4})([smhd])$/;

export function isDuration(value: unknown): value is Duration {
  return typeof value === 'string' && PATTERN.test(value);
}

export function durationMs(duration: Duration): number {
  const match = PATTERN.exec(duration);
  if (!match) throw new TypeError(`not a duration: ${duration} (expected e.g. 30s, 30m, 2h, 7d)`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

/** The Postgres interval literal for a duration: `2h` -> `2 hours`. */
export function durationInterval(duration: Duration): string {
  const match = PATTERN.exec(duration);
  if (!match) throw new TypeError(`not a duration: ${duration}`);
  const unit = { s: 'seconds', m: 'minutes', h: 'hours', d: 'days' }[match[2] as keyof typeof UNIT_MS];
  return `${match[1]} ${unit}`;
}
