import type { Knex } from 'knex';

/**
 * Table grants for the worker and serving roles (registry/db/roles.ts), made by the
 * owner that runs migrations. A schema without those roles (a single-user
 * deployment that never provisioned them) is left as it was.
 */

/** Every table the migrations made; the worker reads and writes them all. */
const TABLES = [
  'system_checks',
  'models',
  'model_versions',
  'model_artifacts',
  'model_version_commits',
  'model_aliases',
  'model_alias_history',
  'feature_groups',
  'feature_commits',
  'feature_rejects',
  'feature_statistics',
  'feature_views',
  'training_datasets',
  'training_dataset_commits',
  'training_checkpoints',
  'prediction_runs',
  'prediction_run_commits',
  'prediction_run_partitions',
  'predictions',
  'prediction_rejects',
];

/** What the prediction server reads: models and their artifacts, and the definitions of groups and views. */
const SERVING_TABLES = ['models', 'model_versions', 'model_artifacts', 'model_version_commits', 'model_aliases', 'model_alias_history', 'feature_groups', 'feature_views'];

async function roleOf(knex: Knex, role: 'worker' | 'serving'): Promise<string | undefined> {
  const result = (await knex.raw(`select current_schema() || '_' || ? as name, exists (select 1 from pg_roles where rolname = current_schema() || '_' || ?) as exists`, [role, role])) as {
    rows: Array<{ name: string; exists: boolean }>;
  };
  const row = result.rows[0];
  return row?.exists ? row.name : undefined;
}

export async function up(knex: Knex): Promise<void> {
  const worker = await roleOf(knex, 'worker');
  const serving = await roleOf(knex, 'serving');
  if (worker) {
    for (const table of TABLES) await knex.raw('grant select, insert, update, delete on ?? to ??', [table, worker]);
    await knex.raw('grant usage, select on all sequences in schema ?? to ??', [await currentSchema(knex), worker]);
    // Tables and sequences later migrations create.
    await knex.raw('alter default privileges in schema ?? grant select, insert, update, delete on tables to ??', [await currentSchema(knex), worker]);
    await knex.raw('alter default privileges in schema ?? grant usage, select on sequences to ??', [await currentSchema(knex), worker]);
  }
  if (serving) {
    for (const table of SERVING_TABLES) await knex.raw('grant select on ?? to ??', [table, serving]);
  }
}

export async function down(knex: Knex): Promise<void> {
  const worker = await roleOf(knex, 'worker');
  const serving = await roleOf(knex, 'serving');
  if (worker) {
    await knex.raw('alter default privileges in schema ?? revoke all on tables from ??', [await currentSchema(knex), worker]);
    await knex.raw('alter default privileges in schema ?? revoke all on sequences from ??', [await currentSchema(knex), worker]);
    for (const table of TABLES) await knex.raw('revoke all on ?? from ??', [table, worker]);
    await knex.raw('revoke all on all sequences in schema ?? from ??', [await currentSchema(knex), worker]);
  }
  if (serving) for (const table of SERVING_TABLES) await knex.raw('revoke all on ?? from ??', [table, serving]);
}

async function currentSchema(knex: Knex): Promise<string> {
  const result = (await knex.raw('select current_schema() as s')) as { rows: Array<{ s: string }> };
  const schema = result.rows[0]?.s;
  if (!schema) throw new Error('no current schema');
  return schema;
}
