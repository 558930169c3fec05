/**
 * registry/db: how the project reaches Postgres. It owns the connection, the
 * migrations, transactions (with the one translation of Postgres error codes into
 * FtiErrors), the SQL builder every store uses for dynamic identifiers, server-side
 * cursors, binary COPY, health, and the least-privilege roles (owner, worker, serving). It knows no store's tables except system_checks; it never
 * imports a store.
 */
export { BinaryCopyReader, BinaryCopyWriter, ColumnDecoder, copyBytes, copyThrough, dataViewOf, DataViews, decodeFields, fieldBytes, fieldDecoder, fieldEnd, fieldEquals, fieldStart, float8Field, int4Field, nullFields, rowTemplate, shortBytesCode, ShortCodeIds, SHORT_BYTES, textField, timestampField, timestampText, type BinaryTuple, type ChunkSource, type DecoderOptions, type FieldDecoder } from './binary-copy.ts';
export { ChunkRecycler, copyIn } from './copy-in.ts';
export { createKnex, databaseOf, type DbOptions } from './connection.ts';
export { binaryCopyOut } from './copy-out.ts';
export { pgHashBytes, PgText } from './pg-hash.ts';
export { arrayLiteral, binaryRows, describeColumns, type NamedStatement } from './binary-rows.ts';
export { streamTablesInStoredOrder, type TableRead } from './copy-reads.ts';
export { streamQueries, streamQuery, timestamptzMicros, type StreamOptions } from './cursor.ts';
export { databaseReachable } from './health.ts';
export { HeldConnections } from './held-connections.ts';
export { migrate, rollbackAll } from './migrate.ts';
export { col, cols, id, ids, int, join, kw, raw, sql, Sql, toInlined, toNative, toText } from './sql.ts';
export { dropSchemaAndRoles, grantServingRead, provisionRoles } from './roles.ts';
export { SystemCheckStore, type SystemCheck } from './system-checks.ts';
export { cancelOnAbort, cancellableTransaction, cancelledWith, inTransaction, isLockNotAvailable, pgErrorCode, transaction, translatePgError, unlessUniqueViolation } from './transaction.ts';
