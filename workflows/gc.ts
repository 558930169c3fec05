import { log, proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { createGcActivities, GcInput, GcReport } from '../activities/gc.ts';
import { duration } from '../core/inputs.ts';
import { poolQueues } from './queues.ts';
import { parseInput } from './validate.ts';
import { ACTIVITY_RETRY } from './retry.ts';

type GcActivities = ReturnType<typeof createGcActivities>;

/** `retention`: a duration (`7d`) or `0`; default the worker's FTI_GC_RETENTION. */
const GcInputSchema = z
  .object({
    retention: z.union([z.literal('0'), duration]).optional(),
    dryRun: z.boolean().optional(),
  })
  .strict();

export type GcWorkflowInput = GcInput;

/**
 * Reaps leftovers older than the retention: staging commits of terminated feature runs,
 * training datasets no model version uses, scratch tables of dead dataset builds (what
 * `fti gc` does, as a workflow a Temporal Schedule can run; activities/gc.ts).
 * Input: `{}`, or `{ "retention": "7d", "dryRun": true }`. The result lists at most 100
 * of each kind; `counts` has the totals.
 */
export async function gc(input: GcWorkflowInput = {}): Promise<GcReport> {
  const args = parseInput('gc', GcInputSchema, input);
  const queues = poolQueues();
  const { reapLeftovers } = proxyActivities<GcActivities>({ taskQueue: queues.cpu, startToCloseTimeout: '30m', heartbeatTimeout: '2m', retry: ACTIVITY_RETRY });
  const report = await reapLeftovers(args);
  log.info('gc done', { dryRun: report.dryRun, ...report.counts });
  return report;
}
