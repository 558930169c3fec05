import { defineSignal, workflowInfo } from '@temporalio/workflow';
import { signalRun } from './signal-run.ts';

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
  if (parent) await signalRun(parent, modelRegisteredSignal, [registered], 'announce the registered version to the parent workflow');
}
