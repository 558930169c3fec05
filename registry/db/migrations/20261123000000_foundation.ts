import type { Knex } from 'knex';

/** System checks: proof that both worker pools and Postgres answer (`fti check`). */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('system_checks', (t) => {
    t.bigIncrements('id');
    t.text('workflow_id').notNullable().unique();
    t.jsonb('cpu_worker').notNullable();
    t.jsonb('gpu_worker').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('system_checks');
}
