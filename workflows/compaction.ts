import { log, proxyActivities } from '@temporalio/workflow';
import { z } from 'zod';
import type { CompactionInput, CompactionReport, createCompactionActivities } from '../activities/compaction.ts';
import { identifier } from '../core/inputs.ts';
import { poolQueues } from './queues.ts';
import { parseInput } from './validate.ts';
import { ACTIVITY_RETRY } from './retry.ts';

type CompactionActivities = ReturnType<typeof createCompactionActivities>;

const CompactionInputSchema = z
  .object({
    featureGroup: identifier.optional(),
    version: z.number().int().min(1).optional(),
    includeOpen: z.boolean().optional(),
  })
  .strict()
  .refine((i) => i.version === undefined || i.featureGroup !== undefined, 'version needs featureGroup');

/**
 * Compacts offline partitions that commits wrote to since their last compaction:
 * rewritten in key order, every snapshot unchanged (what `fti compact` does, as a
 * workflow a Temporal Schedule can run; registry/feature-store/compaction.ts).
 * Input: `{}` (every group), or `{ "featureGroup": "flights", "includeOpen": true }`.
 */
export async function compaction(input: CompactionInput = {}): Promise<CompactionReport> {
  const args = parseInput('compaction', CompactionInputSchema, input);
  const queues = poolQueues();
  const { compactFeatureGroups } = proxyActivities<CompactionActivities>({ taskQueue: queues.cpu, startToCloseTimeout: '2h', heartbeatTimeout: '5m', retry: ACTIVITY_RETRY });
  const report = await compactFeatureGroups(args);
  log.info('compaction done', report.counts);
  return report;
}
