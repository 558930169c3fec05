/**
 * The definitions a deployment knows about (feature groups, feature views), by
 * name and version. Workers are built with them (examples/flights has the flights
 * example's); workflow inputs name a definition, activities look it up here.
 */
import { FtiError, FailureType } from '../core/errors.ts';

interface Versioned {
  name: string;
  version: number;
}

export class Catalog<T extends Versioned> {
  private readonly groups = new Map<string, T[]>();

  constructor(
    private readonly kind: string,
    definitions: T[] = [],
  ) {
    for (const d of definitions) this.add(d);
  }

  add(definition: T): this {
    const versions = this.groups.get(definition.name) ?? [];
    if (versions.some((v) => v.version === definition.version)) {
      throw new Error(`${this.kind} ${definition.name} v${definition.version} is defined twice`);
    }
    versions.push(definition);
    versions.sort((a, b) => a.version - b.version);
    this.groups.set(definition.name, versions);
    return this;
  }

  /** The named definition at `version`, or its highest version when omitted. */
  get(name: string, version?: number): T {
    const versions = this.groups.get(name);
    if (!versions?.length) {
      throw new FtiError(FailureType.NotFound, `unknown ${this.kind} ${JSON.stringify(name)}; known: ${[...this.groups.keys()].sort().join(', ') || 'none'}`);
    }
    const found = version === undefined ? versions.at(-1) : versions.find((v) => v.version === version);
    if (!found) throw new FtiError(FailureType.NotFound, `${this.kind} ${name} has no version ${version}; versions: ${versions.map((v) => v.version).join(', ')}`);
    return found;
  }

  list(): T[] {
    return [...this.groups.values()].flat();
  }
}
