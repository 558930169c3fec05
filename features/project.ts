/**
 * A deployment's definitions: the module named by FTI_DEFINITIONS default-exports
 * `defineProject({ featureGroups: [...] })`. Workers load it at start; activities
 * look definitions up in it by name and version.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FeatureCatalog } from './catalog.ts';
import type { FeatureGroupDefinition } from './definitions.ts';

export interface FtiProject {
  featureGroups: FeatureCatalog;
}

export function defineProject(input: { featureGroups: FeatureGroupDefinition[] }): FtiProject {
  return { featureGroups: new FeatureCatalog(input.featureGroups) };
}

export async function loadProject(modulePath: string): Promise<FtiProject> {
  const url = pathToFileURL(path.resolve(modulePath)).href;
  const mod = (await import(url)) as { default?: FtiProject };
  if (!mod.default?.featureGroups) throw new Error(`${modulePath} must default-export defineProject({ featureGroups: [...] })`);
  return mod.default;
}
