/**
 * The feature group definitions a deployment knows about, by name and version.
 * Workers are built with one (examples/flights has the flights catalog); workflow
 * inputs name a group, activities look its definition up here.
 */
import { FtiError, FailureType } from '../core/errors.ts';
import type { FeatureGroupDefinition } from './definitions.ts';

export class FeatureCatalog {
  private readonly groups = new Map<string, FeatureGroupDefinition[]>();

  constructor(definitions: FeatureGroupDefinition[] = []) {
    for (const d of definitions) this.add(d);
  }

  add(definition: FeatureGroupDefinition): this {
    const versions = this.groups.get(definition.name) ?? [];
    if (versions.some((v) => v.version === definition.version)) {
      throw new Error(`feature group ${definition.name} v${definition.version} is defined twice`);
    }
    versions.push(definition);
    versions.sort((a, b) => a.version - b.version);
    this.groups.set(definition.name, versions);
    return this;
  }

  /** The named group at `version`, or its highest version when omitted. */
  get(name: string, version?: number): FeatureGroupDefinition {
    const versions = this.groups.get(name);
    if (!versions?.length) {
      throw new FtiError(FailureType.NotFound, `unknown feature group ${JSON.stringify(name)}; known: ${[...this.groups.keys()].sort().join(', ') || 'none'}`);
    }
    const found = version === undefined ? versions.at(-1) : versions.find((v) => v.version === version);
    if (!found) throw new FtiError(FailureType.NotFound, `feature group ${name} has no version ${version}; versions: ${versions.map((v) => v.version).join(', ')}`);
    return found;
  }

  list(): FeatureGroupDefinition[] {
    return [...this.groups.values()].flat();
  }
}
