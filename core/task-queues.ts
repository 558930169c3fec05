/**
 * Task-queue names. A deployment (or a test) may prefix both queues so several can
 * share one Temporal namespace without stealing each other's tasks: with prefix
 * `t42-`, CPU work goes to `t42-fti-cpu` and GPU work to `t42-fti-gpu`.
 *
 * Pure functions: workflows import this module too.
 */
export const CPU_QUEUE = 'fti-cpu';
export const GPU_QUEUE = 'fti-gpu';

export type Pool = 'cpu' | 'gpu';

export function taskQueue(pool: Pool, prefix = ''): string {
  return `${prefix}${pool === 'cpu' ? CPU_QUEUE : GPU_QUEUE}`;
}

/** The prefix of a queue name built by `taskQueue`, or undefined for a foreign queue. */
export function queuePrefix(queue: string): string | undefined {
  for (const base of [CPU_QUEUE, GPU_QUEUE]) {
    if (queue.endsWith(base)) return queue.slice(0, queue.length - base.length);
  }
  return undefined;
}
