import { log, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import type { createMonitoringActivities, DriftReport } from '../activities/monitoring.ts';
import { identifier, isoTime } from '../core/inputs.ts';
import { poolQueues } from './queues.ts';
import { parseInput } from './validate.ts';
import { LONG_ACTIVITY } from './retry.ts';

type MonitoringActivities = ReturnType<typeof createMonitoringActivities>;

/** A model version (by ref) and a time window: the input of every monitoring workflow (drift, skew). */
export const ModelWindowInputSchema = z
  .object({
    model: identifier,
    /** An alias, a version number or 'latest' (default: champion). */
    ref: z.union([identifier, z.number().int().positive()]).optional(),
    start: isoTime,
    end: isoTime,
  })
  .strict()
  .refine((i) => Date.parse(i.start) < Date.parse(i.end), { message: 'start must be before end', path: ['end'] });
const MonitoringInputSchema = ModelWindowInputSchema;

export type MonitoringInput = z.input<typeof MonitoringInputSchema>;

/**
 * Drift of a model's features: the view's rows of [start, end) against the train split
 * of the dataset the model version in use learnt from (PSI and KS per feature; the
 * view's thresholds say which are alerts). Input:
 * `{ "model": "flight_delay", "start": "2001-06-01T00:00:00Z", "end": "2001-07-01T00:00:00Z" }`.
 */
export async function monitoringPipeline(input: MonitoringInput): Promise<DriftReport> {
  const args = parseInput('monitoringPipeline', MonitoringInputSchema, input);
  const { workflowId, runId } = workflowInfo();
  const queues = poolQueues();
  const { monitorDrift } = proxyActivities<MonitoringActivities>({ taskQueue: queues.cpu, ...LONG_ACTIVITY });
  const report = await monitorDrift({ ...args, idempotencyKey: `${workflowId}/${runId}`, workflowId });
  if (report.alerts.length) log.warn('drift alerts', { model: report.model, version: report.modelVersion, alerts: report.alerts });
  return report;
}
