import type { Knex } from 'knex';

/**
 * A prediction run may read its partitions by the stream plan (pit-stream.ts): the
 * spine and each joined group read once and joined in Node, as training datasets are
 * built, instead of the SQL window plan's sort of both together.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('alter table prediction_runs drop constraint prediction_runs_strategy_check');
  await knex.raw(`alter table prediction_runs add constraint prediction_runs_strategy_check check (strategy in ('window', 'lateral', 'stream'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`update prediction_runs set strategy = 'window' where strategy = 'stream'`);
  await knex.raw('alter table prediction_runs drop constraint prediction_runs_strategy_check');
  await knex.raw(`alter table prediction_runs add constraint prediction_runs_strategy_check check (strategy in ('window', 'lateral'))`);
}
