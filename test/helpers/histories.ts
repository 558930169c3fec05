/**
 * Workflow histories for replay tests (test/replay.test.ts): the histories of a
 * chain run and its children, exported as JSON by the Temporal CLI
 * (`temporal workflow show --output json`) into a folder of test/histories/ with a
 * workflow-ids.txt. Committed, so a change to workflow code that would break running
 * workflows fails CI. A workflow change behind patched() records a new folder (named
 * after its patch) and keeps the older ones: runs started before it must still replay.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { inject } from 'vitest';
import { resolveTemporalCli } from '../../cli/services/temporal-cli.ts';
import { loadConfig } from '../../core/config.ts';
import type { TestTemporal } from './services.ts';
import { REPO_ROOT } from './processes.ts';

export const HISTORIES_DIR = path.join(REPO_ROOT, 'test', 'histories');

/** Every folder of recorded histories: one per recording (see above), each with its workflow-ids.txt. */
export function historyFolders(): string[] {
  return fs
    .readdirSync(HISTORIES_DIR, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => path.join(HISTORIES_DIR, entry.name))
    .sort();
}

export async function recordHistories(temporal: TestTemporal, parentWorkflowId: string, folder: string): Promise<void> {
  const dir = path.join(HISTORIES_DIR, folder);
  fs.mkdirSync(dir, { recursive: true });
  const cli = await resolveTemporalCli(loadConfig(), { allowBuild: false });
  const ids = [parentWorkflowId];
  for await (const execution of temporal.client.workflow.list({ query: `WorkflowId STARTS_WITH "${parentWorkflowId}/"` })) ids.push(execution.workflowId);
  const index: Record<string, string> = {};
  for (const workflowId of ids) {
    const { type } = await temporal.client.workflow.getHandle(workflowId).describe();
    const { stdout } = await promisify(execFile)(cli, ['workflow', 'show', '--workflow-id', workflowId, '--address', inject('temporalAddress'), '--output', 'json'], { maxBuffer: 64 << 20 });
    const label = workflowId.includes('/') ? (workflowId.split('/').pop() ?? 'child').replace(/[^a-z0-9_-]+/gi, '-') : 'chain';
    const file = `${type}-${label}.json`;
    fs.writeFileSync(path.join(dir, file), stdout);
    index[file] = workflowId;
  }
  // Replay needs each history's workflow id (child ids are part of the history).
  fs.writeFileSync(path.join(dir, 'workflow-ids.txt'), `${Object.entries(index).map(([f, id]) => `${f} ${id}`).join('\n')}\n`);
}

/**
 * The size in bytes of the largest payload (an input, a result, a heartbeat, a failure's
 * details) anywhere in a history: as fetched by the client (bytes) or exported by the
 * CLI as JSON (base64 text).
 */
export function largestPayload(history: unknown): number {
  let largest = 0;
  const visit = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    const { metadata, data } = node as { metadata?: unknown; data?: unknown };
    if (metadata !== undefined && metadata !== null && typeof metadata === 'object' && data !== undefined) {
      const bytes = data instanceof Uint8Array ? data.length : typeof data === 'string' ? Buffer.from(data, 'base64').length : 0;
      largest = Math.max(largest, bytes);
    }
    for (const value of Object.values(node)) visit(value);
  };
  visit(history);
  return largest;
}

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

/** A local activity's marker, as the SDK core writes its own record (LocalActivityMarkerData, JSON): its type and attempt. */
export function localActivityOf(event: HistoryEvent): { type: string; attempt: number } | undefined {
  const marker = event.markerRecordedEventAttributes;
  const data = marker?.markerName === 'core_local_activity' ? marker.details?.data?.payloads?.[0]?.data : undefined;
  if (!data) return undefined;
  const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string; attempt?: number };
  return { type: parsed.activity_type ?? '?', attempt: parsed.attempt ?? 1 };
}

/** The steps a history ran, by type: as activities (scheduled) and as local activities (their markers). */
export function stepsOf(history: History): { activities: string[]; localActivities: string[] } {
  const activities: string[] = [];
  const localActivities: string[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) activities.push(scheduled.activityType?.name ?? '?');
    const local = localActivityOf(e);
    if (local) localActivities.push(local.type);
  }
  return { activities, localActivities };
}
