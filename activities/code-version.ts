/**
 * The code version recorded in a model version's lineage, and the rule that makes
 * it required outside development.
 *
 * The version is FTI_CODE_VERSION when set (a Docker image gets it as a build
 * argument: `.dockerignore` leaves `.git` out, so there is nothing to ask git in
 * there), else the sha of the git checkout the worker runs from (`-dirty` when it
 * has uncommitted changes to tracked files), else none.
 *
 * "Development" is explicit: FTI_ENV unset or `development`. FTI_ENV=production
 * (the Dockerfile's images set it) makes a code version required: a model version
 * whose code cannot be named is refused at registration.
 */
import { execFileSync } from 'node:child_process';
import { FailureType, FtiError } from '../core/errors.ts';

export type DeploymentMode = 'development' | 'production';

let fromGit: string | null | undefined;

/** The code a model was trained with: FTI_CODE_VERSION, else the checkout's git sha, else null. */
export function codeVersion(): string | null {
  const configured = process.env.FTI_CODE_VERSION?.trim();
  if (configured) return configured;
  if (fromGit !== undefined) return fromGit;
  try {
    const cwd = new URL('..', import.meta.url);
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd }).trim();
    fromGit = dirty ? `${sha}-dirty` : sha;
  } catch {
    fromGit = null;
  }
  return fromGit;
}

/** FTI_ENV: unset or `development` → development; `production` → production; anything else is refused. */
export function deploymentMode(env: NodeJS.ProcessEnv = process.env): DeploymentMode {
  const value = env.FTI_ENV?.trim() ?? '';
  if (value === '' || value === 'development') return 'development';
  if (value === 'production') return 'production';
  throw new FtiError(FailureType.InvalidInput, `FTI_ENV must be 'development' or 'production' (or unset: development), got ${JSON.stringify(env.FTI_ENV)}`);
}

/**
 * The code version to record on a model version. Outside development a version
 * without one is refused (non-retryable FtiInvalidInput): its lineage could not say
 * which code made it.
 */
export function requireCodeVersion(version: string | null | undefined, mode: DeploymentMode = deploymentMode()): string | undefined {
  if (version) return version;
  if (mode === 'development') return undefined;
  throw new FtiError(
    FailureType.InvalidInput,
    'refusing to register a model version without a code version (FTI_ENV=production): set FTI_CODE_VERSION on the workers ' +
      '(images: `FTI_CODE_VERSION=$(git rev-parse HEAD) docker compose build`, or `docker build --build-arg FTI_CODE_VERSION=…`), ' +
      'or run them from a git checkout',
    { rule: 'code version required outside development' },
  );
}
