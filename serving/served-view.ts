/**
 * A feature view as the feature route serves it: its registered definition (read
 * through the feature store), the online lookup of its features (the very lookup a
 * version trained on the view predicts with: one per view, in the LookupCache both
 * routes share) and the parser of its entity keys (the predict route's).
 *
 * `name@N` is immutable once registered: resolved once and kept. `name` alone is the
 * latest registered version, re-read at most every LATEST_TTL_MS (as `latest` of a
 * model is), so a new version is served within seconds of its registration.
 *
 * Only views that resolved are kept, so callers cannot grow the caches with names:
 * an unknown view is a 404 naming the views (or versions) that exist, a view that
 * cannot be served online (a group not online-enabled, a feature not stored) a 409
 * with the lookup's own reason, and both are asked again next time.
 */
import { FailureType, FtiError } from '../core/errors.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { OnlineViewLookup, PredictionStore } from '../registry/predictions/index.ts';
import { HttpError } from './http-errors.ts';
import { LATEST_TTL_MS } from './model-resolver.ts';
import { describeKeys, entityKeysParser, sharedLookup, type EntityKeys, type LookupCache } from './served-model.ts';

export interface ServedView {
  definition: FeatureViewDefinition;
  lookup: OnlineViewLookup;
  /** The request's entities, checked against the spine's keys; HttpError 400 naming every problem of the first bad one. */
  parseKeys(entities: readonly unknown[]): EntityKeys[];
}

export interface ViewResolverOptions {
  /** Registered feature views (the feature store): the given version, or the latest. */
  views: {
    view(name: string, version?: number): Promise<{ definition: FeatureViewDefinition }>;
    viewVersions(options?: { name?: string; limit?: number }): Promise<Array<{ name: string; versions: number[] }>>;
  };
  predictions: PredictionStore;
  /** The online lookups the served models use. */
  lookups: LookupCache;
}

/** At most this many views are named in a 404. */
const NAMED_VIEWS = 50;

export class ViewResolver {
  private readonly pinned = new Map<string, Promise<ServedView>>();
  private readonly latest = new Map<string, { version: number; resolvedAt: number }>();

  constructor(private readonly options: ViewResolverOptions) {}

  /** The view `name@version`, or the latest version of `name`. */
  async resolve(name: string, version?: number): Promise<ServedView> {
    if (version !== undefined) return this.servedView(name, version);
    const cached = this.latest.get(name);
    if (cached && Date.now() - cached.resolvedAt <= LATEST_TTL_MS) return this.servedView(name, cached.version);
    const definition = await this.definition(name);
    this.latest.set(name, { version: definition.version, resolvedAt: Date.now() });
    return this.servedView(name, definition.version, definition);
  }

  private servedView(name: string, version: number, known?: FeatureViewDefinition): Promise<ServedView> {
    const key = `${name}@${version}`;
    let view = this.pinned.get(key);
    if (!view) {
      const created = this.load(name, version, known);
      view = created;
      this.pinned.set(key, created);
      created.catch(() => this.pinned.delete(key));
    }
    return view;
  }

  private async load(name: string, version: number, known?: FeatureViewDefinition): Promise<ServedView> {
    const definition = known ?? (await this.definition(name, version));
    let lookup: OnlineViewLookup;
    try {
      lookup = await sharedLookup(this.options.predictions, this.options.lookups, definition);
    } catch (err) {
      // The lookup's own check: a group not online-enabled, a feature its group does not store, a group gone.
      if (err instanceof FtiError && (err.type === FailureType.InvalidInput || err.type === FailureType.NotFound)) {
        throw new HttpError(409, 'view_not_servable', err.message, { view: name, version });
      }
      throw err;
    }
    const where = `feature view ${definition.name} v${definition.version} (keyed by ${describeKeys(lookup.keys)})`;
    return { definition, lookup, parseKeys: entityKeysParser(lookup.keys, where) };
  }

  /** The registered definition; a 404 naming what exists when there is none. */
  private async definition(name: string, version?: number): Promise<FeatureViewDefinition> {
    try {
      return (await this.options.views.view(name, version)).definition;
    } catch (err) {
      if (!(err instanceof FtiError) || err.type !== FailureType.NotFound) throw err;
    }
    const [own] = await this.options.views.viewVersions({ name });
    if (own && version !== undefined) {
      throw new HttpError(404, 'unknown_view_version', `feature view ${name} has no version ${version} (registered versions: ${own.versions.map((v) => `v${v}`).join(', ')})`, {
        view: name,
        versions: own.versions,
      });
    }
    const views = await this.options.views.viewVersions({ limit: NAMED_VIEWS });
    const named = views.length === 0 ? 'no feature view is registered' : `registered views: ${views.map((v) => `${v.name} (${v.versions.map((n) => `v${n}`).join(', ')})`).join(', ')}`;
    throw new HttpError(404, 'unknown_view', `feature view '${name}' is not registered (${named}${views.length === NAMED_VIEWS ? ', …' : ''})`, { views });
  }
}
