/**
 * Replays committed workflow histories (test/histories/*.json, recorded from a real
 * chain run with FTI_RECORD_HISTORIES=1) against today's workflow code: a change
 * that is not replay-safe (it would break workflows already running) fails here.
 * Such a change needs patched() in the workflow.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import type { HistoryAndWorkflowId } from '@temporalio/common';
import { describe, expect, inject, it } from 'vitest';
import { HISTORIES_DIR, largestPayload } from './helpers/histories.ts';

const files = fs.existsSync(HISTORIES_DIR) ? fs.readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json')).sort() : [];
const workflowIds = new Map(
  fs
    .readFileSync(path.join(HISTORIES_DIR, 'workflow-ids.txt'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ') as [string, string]),
);

describe('workflow replay', () => {
  it('has recorded histories of every pipeline workflow', () => {
    const types = new Set(files.map((f) => f.split('-')[0]));
    expect([...types].sort()).toEqual(['batchInference', 'featurePipeline', 'ftiPipeline', 'trainingPipeline']);
  });

  // Temporal warns at 256 KB and refuses 2 MB; ours stay far below: inputs name things, results count them.
  it('carries no payload over 64 KB in any recorded history (the chain the demo runs)', () => {
    for (const f of files) {
      const history: unknown = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, f), 'utf8'));
      expect(largestPayload(history), f).toBeGreaterThan(0);
      expect(largestPayload(history), f).toBeLessThan(64 * 1024);
    }
  });

  it('replays every recorded history without nondeterminism', async () => {
    const histories = files.map(
      (f): HistoryAndWorkflowId => ({ workflowId: workflowIds.get(f) ?? f, history: JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, f), 'utf8')) as unknown }),
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
