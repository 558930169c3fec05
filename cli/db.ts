/**
 * For CLI commands that read or write the registry: connect to DATABASE_URL, or to
 * the embedded Postgres as the worker role (reusing a running one, e.g. under `fti dev`, or starting
 * it for the duration of the command). Migrations are not applied here: that is
 * `fti migrate` (or `fti dev`).
 */
import type { Knex } from 'knex';
import { loadConfig, type FtiConfig } from '../core/config.ts';
import { createKnex } from '../registry/db/index.ts';
import { startPostgres } from './services/postgres.ts';

export async function withKnex<T>(fn: (knex: Knex, config: FtiConfig) => Promise<T>, config: FtiConfig = loadConfig()): Promise<T> {
  const postgres = await startPostgres(config);
  const knex = createKnex({ url: postgres.urls.worker, schema: config.schema, applicationName: 'fti-cli' });
  try {
    return await fn(knex, config);
  } finally {
    await knex.destroy();
    await postgres.stop();
  }
}
