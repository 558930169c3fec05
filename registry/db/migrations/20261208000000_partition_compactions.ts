import type { Knex } from 'knex';

/**
 * When each offline partition was last compacted (registry/feature-store/compaction.ts),
 * and up to which commit: a partition no commit has written to since is left alone.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('feature_partition_compactions', (t) => {
    t.integer('feature_group_id').notNullable().references('feature_groups.id');
    t.text('partition').notNullable();
    // The group's last visible_seq when the partition was compacted.
    t.bigInteger('compacted_seq').notNullable();
    t.bigInteger('rows').notNullable();
    t.timestamp('compacted_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['feature_group_id', 'partition']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('feature_partition_compactions');
}
