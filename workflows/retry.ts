import type { RetryPolicy } from '@temporalio/common';

/**
 * The retry policy of every CPU activity: 1 s doubling to at most 30 s, 10 attempts,
 * so a run in flight outlives about 2.5 minutes of outage (a Postgres restart or
 * failover, a worker replaced). With 5 attempts and no cap a database down for more
 * than ~15 s failed every run in flight. Domain errors (bad input, a conflict) are
 * non-retryable and fail at once.
 */
export const ACTIVITY_RETRY: RetryPolicy = { maximumAttempts: 10, initialInterval: '1s', maximumInterval: '30s' };
