/**
 * A deployment's definitions: the module named by FTI_DEFINITIONS default-exports
 * `defineProject({ featureGroups: [...], featureViews: [...] })`. Workers load it at start; activities
 * look definitions up in it by name and version.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Catalog } from './catalog.ts';
import type { FeatureGroupDefinition } from './definitions.ts';
import type { FeatureViewDefinition } from './views.ts';

export interface FtiProject {
  featureGroups: Catalog<FeatureGroupDefinition>;
  featureViews: Catalog<FeatureViewDefinition>;
}

export function defineProject(input: { featureGroups: FeatureGroupDefinition[]; featureViews?: FeatureViewDefinition[] }): FtiProject {
  const featureGroups = new Catalog('feature group', input.featureGroups);
  const featureViews = new Catalog('feature view', input.featureViews ?? []);
  // A view's groups must be defined in the same project, at the versions it names.
  for (const view of featureViews.list()) {
    for (const g of [{ group: view.spine.group, version: view.spine.version }, ...view.joins]) featureGroups.get(g.group, g.version);
  }
  return { featureGroups, featureViews };
}

export async function loadProject(modulePath: string): Promise<FtiProject> {
  const url = pathToFileURL(path.resolve(modulePath)).href;
  const mod = (await import(url)) as { default?: FtiProject };
  if (!mod.default?.featureGroups) throw new Error(`${modulePath} must default-export defineProject({ featureGroups: [...] })`);
  return mod.default;
}
