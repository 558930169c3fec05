import { log, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { z } from 'zod';
import type { createSkewActivities, SkewReport } from '../activities/skew.ts';
import { ModelWindowInputSchema } from './monitoring.ts';
import { poolQueues } from './queues.ts';
import { LONG_ACTIVITY } from './retry.ts';
import { parseInput } from './validate.ts';

type SkewActivities = ReturnType<typeof createSkewActivities>;

const SkewCheckInputSchema = ModelWindowInputSchema;

export type SkewCheckInput = z.input<typeof SkewCheckInputSchema>;

/**
 * Training/serving skew of a model version: the feature vectors the prediction server
 * logged for it in [start, end) (`fti serve --skew-log-rate`) against the offline
 * point-in-time vectors of the same entities at the same request times; per feature,
 * the share of mismatches and the largest difference. Input:
 * `{ "model": "flight_delay", "start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z" }`.
 */
export async function skewCheck(input: SkewCheckInput): Promise<SkewReport> {
  const args = parseInput('skewCheck', SkewCheckInputSchema, input);
  const { workflowId, runId } = workflowInfo();
  const queues = poolQueues();
  const { checkSkew } = proxyActivities<SkewActivities>({ taskQueue: queues.cpu, ...LONG_ACTIVITY });
  const report = await checkSkew({ ...args, idempotencyKey: `${workflowId}/${runId}`, workflowId });
  if (report.alerts.length) log.warn('training/serving skew', { model: report.model, version: report.modelVersion, features: report.alerts });
  return report;
}
