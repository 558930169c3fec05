/**
 * The database roles of a store schema (registry/db/roles.ts creates them): their
 * names, shared by config (which URL a process connects with) and the registry.
 */
import { assertIdentifier } from './names.ts';

export const DB_ROLES = ['owner', 'worker', 'serving'] as const;
export type DbRole = (typeof DB_ROLES)[number];

/** `<schema>_<role>`: roles are per schema, so test schemas and deployments never share one. */
export function roleName(schema: string, role: DbRole): string {
  return assertIdentifier(`${assertIdentifier(schema, 'schema')}_${role}`, `the ${role} role of schema ${schema} (schema names are at most 55 characters)`);
}

/** `url` with its user and password replaced. */
export function urlWithRole(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}
