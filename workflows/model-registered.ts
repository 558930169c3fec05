import { defineSignal, getExternalWorkflowHandle, log, workflowInfo } from '@temporalio/workflow';

/** A model version a training pipeline has just registered. */
export interface RegisteredVersion {
  model: string;
  version: number;
}

/**
 * Sent by a training pipeline started with `announceVersion` to its parent once its
 * version is registered, before the version's report is written: ftiPipeline starts
 * scoring that version then, beside the report.
 */
export const modelRegisteredSignal = defineSignal<[RegisteredVersion]>('modelRegistered');

/**
 * Signals the parent, if this run has one. Never fails the run: a parent that is gone
 * (or never listened) still learns the version from this run's result.
 */
export async function announceToParent(registered: RegisteredVersion): Promise<void> {
  const parent = workflowInfo().parent;
  if (!parent) return;
  try {
    await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(modelRegisteredSignal, registered);
  } catch (err) {
    log.warn('could not announce the registered version to the parent workflow', { parent: parent.workflowId, error: String(err) });
  }
}
