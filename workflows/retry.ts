import type { RetryPolicy } from '@temporalio/common';

/**
 * The retry policy of every CPU activity: 1 s doubling to at most 30 s, 10 attempts,
 * so a run in flight outlives about 2.5 minutes of outage (a Postgres restart or
 * failover, a worker replaced). With 5 attempts and no cap a database down for more
 * than ~15 s failed every run in flight. Domain errors (bad input, a conflict) are
 * non-retryable and fail at once.
 */
export const ACTIVITY_RETRY: RetryPolicy = { maximumAttempts: 10, initialInterval: '1s', maximumInterval: '30s' };

/**
 * The options of a long CPU activity (a partition, a commit, a training dataset, a drift
 * or skew check): up to an hour, heartbeated. Heartbeats follow real progress (rows read,
 * batches scored) or, around one long statement, a 5 s timer: 30 s without one means the
 * worker is gone or stalled, and the retry (fenced) starts elsewhere.
 */
export const LONG_ACTIVITY = { startToCloseTimeout: '60m', heartbeatTimeout: '30s', retry: ACTIVITY_RETRY } as const;
