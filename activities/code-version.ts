import { execFileSync } from 'node:child_process';

let cached: string | null | undefined;

/** The code a model was trained with: FTI_CODE_VERSION, else the checkout's git sha, else null. */
export function codeVersion(): string | null {
  if (cached !== undefined) return cached;
  if (process.env.FTI_CODE_VERSION) return (cached = process.env.FTI_CODE_VERSION);
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd: new URL('..', import.meta.url) }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd: new URL('..', import.meta.url) }).trim();
    cached = dirty ? `${sha}-dirty` : sha;
  } catch {
    cached = null;
  }
  return cached;
}
