/**
 * docker-compose.yml is checked by a real Compose parser (Debian's docker-compose),
 * since no Docker engine runs here to bring it up.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from './helpers/processes.ts';

const COMPOSE_FILE = path.join(REPO_ROOT, 'docker-compose.yml');

function composeConfig(file: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('docker-compose', ['-f', file, 'config'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (result.error) throw new Error(`docker-compose is not installed (apt-get install docker-compose): ${result.error.message}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface ComposeService {
  image?: string;
  build?: { context: string; target?: string; args?: Record<string, string> };
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  deploy?: { resources?: { reservations?: { devices?: Array<{ driver: string; capabilities: string[] }> } } };
}

describe('docker-compose.yml', () => {
  it('is valid for a real Compose parser', () => {
    execFileSync('docker-compose', ['-f', COMPOSE_FILE, 'config', '-q'], { cwd: REPO_ROOT });
  });

  it('the same parser rejects a broken file (the check is not a no-op)', () => {
    const broken = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'compose-')), 'docker-compose.yml');
    fs.writeFileSync(broken, fs.readFileSync(COMPOSE_FILE, 'utf8').replace('image: postgres:17', 'image: [postgres, 17]'));
    expect(composeConfig(broken).status).not.toBe(0);
  });

  it('runs Postgres, Temporal on that Postgres, the UI, and both worker pools built from the repo', () => {
    const { status, stdout, stderr } = composeConfig(COMPOSE_FILE);
    expect(status, stderr).toBe(0);
    const services = (parse(stdout) as { services: Record<string, ComposeService> }).services;
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'temporal', 'temporal-ui', 'migrate', 'cpu-worker', 'gpu-worker']));

    expect(services.temporal?.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgres' });
    expect(services['temporal-ui']?.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');

    for (const [name, target] of [['cpu-worker', 'cpu'], ['gpu-worker', 'gpu']] as const) {
      const worker = services[name];
      expect(worker?.build).toMatchObject({ context: REPO_ROOT, target });
      expect(worker?.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233' });
      expect(worker?.environment?.DATABASE_URL).toMatch(/@postgres:5432\//);
      expect(worker?.depends_on?.migrate?.condition).toBe('service_completed_successfully');
    }
    const devices = services['gpu-worker']?.deploy?.resources?.reservations?.devices ?? [];
    expect(devices).toContainEqual(expect.objectContaining({ driver: 'nvidia', capabilities: ['gpu'] }));
    expect(services['cpu-worker']?.deploy?.resources?.reservations?.devices).toBeUndefined();
  });

  it('gives every process its own database user: Temporal, migrations (owner), workers, the prediction server', () => {
    const { status, stdout, stderr } = composeConfig(COMPOSE_FILE);
    expect(status, stderr).toBe(0);
    const services = (parse(stdout) as { services: Record<string, ComposeService & { command?: string[] }> }).services;
    const user = (url: string | undefined) => (url ? decodeURIComponent(new URL(url).username) : undefined);
    const superuser = services.postgres?.environment?.POSTGRES_USER;
    expect(services.temporal?.environment?.POSTGRES_USER).toBe('temporal');
    expect(user(services.migrate?.environment?.DATABASE_URL)).toBe('fti_owner');
    expect(user(services.migrate?.environment?.FTI_ADMIN_DATABASE_URL)).toBe(superuser);
    for (const name of ['cpu-worker', 'gpu-worker']) expect(user(services[name]?.environment?.DATABASE_URL), name).toBe('fti_worker');
    expect(user(services.serve?.environment?.DATABASE_URL)).toBe('fti_serving');
    expect(services.serve?.command).toEqual(expect.arrayContaining(['serve']));
    // Only the one-shot migrate service ever holds the superuser's connection.
    for (const [name, service] of Object.entries(services)) {
      if (name === 'migrate' || name === 'postgres') continue;
      for (const value of Object.values(service.environment ?? {})) expect(user(/^postgres:\/\//.test(value) ? value : undefined), `${name}`).not.toBe(superuser);
    }
  });

  it('passes the code version to the worker builds (the image has no .git to ask), and the image requires one', () => {
    const withVersion = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config'], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, FTI_CODE_VERSION: 'abc1234' } });
    expect(withVersion.status, withVersion.stderr).toBe(0);
    const services = (parse(withVersion.stdout) as { services: Record<string, ComposeService> }).services;
    for (const name of ['cpu-worker', 'gpu-worker']) expect(services[name]?.build?.args, name).toMatchObject({ FTI_CODE_VERSION: 'abc1234' });
    // Unset, the argument is empty (never a compose error); the worker then refuses to register.
    const rest = { ...process.env };
    delete rest.FTI_CODE_VERSION;
    const without = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config'], { cwd: REPO_ROOT, encoding: 'utf8', env: rest });
    expect(without.status, without.stderr).toBe(0);
    expect((parse(without.stdout) as { services: Record<string, ComposeService> }).services['cpu-worker']?.build?.args).toMatchObject({ FTI_CODE_VERSION: '' });

    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^ENV FTI_ENV=production$/m);
    for (const target of ['cpu', 'gpu']) {
      const stage = dockerfile.split(/^FROM /m).find((s) => new RegExp(`AS ${target}\\n`).test(s)) ?? '';
      expect(stage, target).toMatch(/^ARG FTI_CODE_VERSION=?$/m);
      expect(stage, target).toMatch(/^ENV FTI_CODE_VERSION=\$\{FTI_CODE_VERSION\}$/m);
    }
  });

  it('builds each worker target that compose names', () => {
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM \S+ AS cpu$/m);
    expect(dockerfile).toMatch(/^FROM \S+ AS gpu$/m);
    expect(dockerfile).toContain('workers/cpu.ts');
    expect(dockerfile).toContain('workers/gpu.ts');
  });
});
