/**
 * A user clones the repository into a private directory (mode 0700, like root's
 * home or a `mktemp -d` folder) and runs the tests or the demo. As root, Postgres
 * runs as the unprivileged `postgres` user, which cannot reach anything inside that
 * directory, node_modules' server binaries included. The suite's own Postgres start
 * must work there all the same.
 *
 * The clone is the working tree hard-linked (no copying of 31k files) into a fresh
 * 0700 directory under .fti/, and the start runs in a process of its own with that
 * clone as its working directory and module root.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../cli/services/ports.ts';
import { REPO_ROOT } from '../helpers/processes.ts';

function linkTree(from: string, to: string): void {
  // Tracked and untracked-but-not-ignored files: what a clone plus the user's edits holds.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: from, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    const source = path.join(from, file);
    if (!fs.existsSync(source)) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
    fs.linkSync(source, path.join(to, file));
  }
  // node_modules as `npm ci` left it, hard-linked too.
  execFileSync('cp', ['-al', path.join(from, 'node_modules'), path.join(to, 'node_modules')]);
}

describe('a clone in a private directory', () => {
  const parent = path.join(REPO_ROOT, '.fti');
  fs.mkdirSync(parent, { recursive: true });
  const privateDir = fs.mkdtempSync(path.join(parent, 'private-'));

  afterAll(() => {
    fs.rmSync(privateDir, { recursive: true, force: true });
  });

  it("starts the suite's Postgres and connects as the worker role", async () => {
    expect(fs.statSync(privateDir).mode & 0o777).toBe(0o700);
    const clone = path.join(privateDir, 'fti');
    linkTree(REPO_ROOT, clone);
    const env: NodeJS.ProcessEnv = { ...process.env, FTI_PG_PORT: String(await freePort()), FTI_SCHEMA: 'fti' };
    delete env.DATABASE_URL;
    delete env.FTI_DATA_DIR;
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', path.join(clone, 'test', 'fixtures', 'postgres-start.ts')], { cwd: clone, env, timeout: 120_000 }, (err, out, errOut) => {
        if (err) reject(new Error(`the Postgres start failed in ${clone}: ${String(err)}\n${errOut}`));
        else resolve({ stdout: out, stderr: errOut });
      });
    });
    const lines = stdout.trim().split('\n');
    expect(JSON.parse(lines[lines.length - 1] ?? '{}'), stderr).toEqual({ user: 'fti_worker', superuser: false });
  });
});
