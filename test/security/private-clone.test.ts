/**
 * A user clones the repository into a private directory (mode 0700, like root's
 * home or a `mktemp -d` folder) or a public one, and runs the tests or the demo. As
 * root, Postgres runs as the unprivileged `postgres` user, which cannot reach anything
 * inside a private directory, node_modules' server binaries included, nor a data
 * directory whose parent the start made private. The suite's own Postgres start must
 * work in both all the same.
 *
 * The clone is the working tree hard-linked (no copying of 31k files) into a fresh
 * directory under the temp dir, and the start runs in a process of its own with that
 * clone as its working directory and module root.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../cli/services/ports.ts';
import { REPO_ROOT } from '../helpers/processes.ts';

function linkTree(from: string, to: string): void {
  // Tracked and untracked-but-not-ignored files: what a clone plus the user's edits holds.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: from, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    const source = path.join(from, file);
    if (!fs.existsSync(source)) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
    linkOrCopy(source, path.join(to, file));
  }
  // node_modules as `npm ci` left it, hard-linked too (copied when the temp dir is another file system).
  try {
    execFileSync('cp', ['-al', path.join(from, 'node_modules'), path.join(to, 'node_modules')], { stdio: 'pipe' });
  } catch {
    fs.rmSync(path.join(to, 'node_modules'), { recursive: true, force: true });
    execFileSync('cp', ['-a', path.join(from, 'node_modules'), path.join(to, 'node_modules')]);
  }
}

function linkOrCopy(source: string, target: string): void {
  try {
    fs.linkSync(source, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    fs.copyFileSync(source, target);
  }
}

/**
 * Starts Postgres as the demo does in a fresh clone (no .fti yet) inside a directory of
 * `mode`, and checks it connects as the worker role.
 */
async function startInClone(mode: number): Promise<void> {
  // Under the temp dir (every ancestor reachable), not under the checkout (whose .fti may be private).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-clone-'));
  try {
    fs.chmodSync(dir, mode);
    expect(fs.statSync(dir).mode & 0o777).toBe(mode);
    const clone = path.join(dir, 'fti');
    linkTree(REPO_ROOT, clone);
    expect(fs.existsSync(path.join(clone, '.fti'))).toBe(false);
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
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('a fresh clone', () => {
  it("in a private directory (0700): starts the suite's Postgres and connects as the worker role", async () => {
    await startInClone(0o700);
  });

  // The data directory's parent (.fti, made by the start) must stay reachable: made 0700
  // along with the data directory, it locked the postgres user out of a fresh clone.
  it('in a public directory (0755), with no .fti yet: the same', async () => {
    await startInClone(0o755);
  });
});
