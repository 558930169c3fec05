/**
 * Replays committed workflow histories (test/histories/<folder>/*.json, recorded from a
 * real chain run with FTI_RECORD_HISTORIES=<folder>) against today's workflow code: a
 * change that is not replay-safe (it would break workflows already running) fails here.
 * Such a change needs patched() in the workflow, and a new recording beside the old
 * ones: each folder holds runs of the code of its day.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import type { HistoryAndWorkflowId } from '@temporalio/common';
import { describe, expect, inject, it } from 'vitest';
import { historyFolders, largestPayload } from './helpers/histories.ts';

interface Recording {
  folder: string;
  files: string[];
  workflowIds: Map<string, string>;
}

const recordings: Recording[] = historyFolders().map((folder) => ({
  folder: path.basename(folder),
  files: fs
    .readdirSync(folder)
    .filter((f) => f.endsWith('.json'))
    .map((f) => path.join(folder, f))
    .sort(),
  workflowIds: new Map(
    fs
      .readFileSync(path.join(folder, 'workflow-ids.txt'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ') as [string, string]),
  ),
}));
const files = recordings.flatMap((r) => r.files);

describe('workflow replay', () => {
  it('has recordings from before and after the short steps became local activities, scoring began at registration and the chain started its children up front, each of every pipeline workflow', () => {
    expect(recordings.map((r) => r.folder)).toEqual(expect.arrayContaining(['before-local-steps', 'local-steps', 'score-on-registration', 'children-up-front']));
    for (const { folder, files: recorded } of recordings) {
      const types = new Set(recorded.map((f) => path.basename(f).split('-')[0]));
      expect([...types].sort(), folder).toEqual(['batchInference', 'featurePipeline', 'ftiPipeline', 'trainingPipeline']);
    }
  });

  // Temporal warns at 256 KB and refuses 2 MB; ours stay far below: inputs name things, results count them.
  it('carries no payload over 64 KB in any recorded history (the chain the demo runs)', () => {
    for (const f of files) {
      const history: unknown = JSON.parse(fs.readFileSync(f, 'utf8'));
      expect(largestPayload(history), f).toBeGreaterThan(0);
      expect(largestPayload(history), f).toBeLessThan(64 * 1024);
    }
  });

  it('replays every recorded history without nondeterminism', async () => {
    const histories = recordings.flatMap(({ files: recorded, workflowIds }) =>
      recorded.map((f): HistoryAndWorkflowId => ({ workflowId: workflowIds.get(path.basename(f)) ?? f, history: JSON.parse(fs.readFileSync(f, 'utf8')) as unknown })),
    );
    const results = Worker.runReplayHistories({ workflowBundle: { codePath: inject('workflowBundlePath') } }, histories);
    let replayed = 0;
    for await (const result of results) {
      expect(result.error, `${result.workflowId}: ${String(result.error)}`).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(files.length);
  });
});
