/**
 * Which loaded version answers a request for `name@ref`. Versions are loaded once
 * (LeaseCache); an alias (or `latest`) is a pointer to one of them, resolved on first
 * use and then moved by alias announcements (NOTIFY) without a database round trip
 * per request.
 *
 * Hot swap: when an alias moves, the new version is loaded in the background while
 * the old one keeps answering; then the pointer moves in one synchronous step.
 * A request holds a lease on the version it started with, so a swap never pulls a
 * model from under a request in flight, and no request is dropped or delayed.
 *
 * Pinning: every served alias holds a lease on its version for as long as it points
 * there, so the cache never evicts it; only versions asked for by number compete for
 * the remaining room.
 *
 * Loading by number is limited, so callers cannot thrash the cache or make the server
 * load every version ever registered: `name@N` loads only a version that holds or held
 * an alias (the registry's alias history), or one on the allow-list. Anything else is
 * refused (VersionNotAllowedError) before anything is loaded; a version that does not
 * exist is the registry's NotFound.
 */
import type { Logger } from '../core/log.ts';
import type { AliasNotification, ModelRegistry, ParsedRef } from '../registry/models/index.ts';
import { LeaseCache, type Lease } from '../ml/lease-cache.ts';
import type { ServingMetrics } from './metrics.ts';
import type { ServedModel } from './served-model.ts';

/** How long a resolution of `latest` is trusted (registrations announce nothing). */
export const LATEST_TTL_MS = 5_000;

export interface ServedAlias {
  model: string;
  /** The alias, or 'latest'. */
  alias: string;
  version: number;
  /** Set when the last move of the alias could not be followed (the previous version keeps answering). */
  swapError?: string;
}

interface Pointer {
  model: string;
  alias: string;
  version: number;
  lease: Lease<ServedModel>;
  resolvedAt: number;
  swapError?: string;
}

export interface ResolverOptions {
  registry: ModelRegistry;
  load: (name: string, version: number) => Promise<ServedModel>;
  metrics: ServingMetrics;
  log: Logger;
  /**
   * Most versions kept in memory (default 8). Versions a served alias points at are
   * leased and never evicted, however many there are; idle versions asked for by
   * number are evicted least recently used first beyond it.
   */
  capacity?: number;
  /** `name@N` versions that may be loaded by number although they never held an alias. */
  allowVersions?: ReadonlyArray<{ name: string; version: number }>;
}

/** A request for a version by number that the loading rule refuses (the HTTP layer answers 403). */
export class VersionNotAllowedError extends Error {
  constructor(
    readonly model: string,
    readonly version: number,
  ) {
    super(
      `model '${model}' version ${version} is not served by number: only versions that hold or held an alias (fti models promote) or are allow-listed (fti serve --allow-version ${model}@${version}) are loaded on demand`,
    );
    this.name = 'VersionNotAllowedError';
  }
}

export class ModelResolver {
  private readonly versions: LeaseCache<ServedModel>;
  private readonly pointers = new Map<string, Pointer>();
  private readonly creating = new Map<string, Promise<Pointer>>();
  /** Bumped by every announced move of an alias: a resolution that raced one starts over. */
  private readonly generations = new Map<string, number>();
  /**
   * Version keys that may be loaded by number: the allow-list, and versions seen to hold
   * an alias. Only ever holds such versions, so callers cannot grow it.
   */
  private readonly permitted: Set<string>;

  constructor(private readonly options: ResolverOptions) {
    this.versions = new LeaseCache(async (key) => {
      const { name, version } = parseVersionKey(key);
      options.metrics.modelLoads.inc({ model: name, version: String(version) });
      return options.load(name, version);
    }, options.capacity ?? 8);
    this.permitted = new Set((options.allowVersions ?? []).map((v) => versionKey(v.name, v.version)));
  }

  /** A lease on the version that answers `name@ref`; release it when the request is done. */
  async acquire(name: string, ref: ParsedRef): Promise<Lease<ServedModel>> {
    if (ref.kind === 'version') {
      const key = versionKey(name, ref.version);
      if (!this.permitted.has(key)) await this.checkVersion(name, ref.version);
      return this.versions.acquire(key);
    }
    const alias = ref.kind === 'alias' ? ref.alias : 'latest';
    const key = pointerKey(name, alias);
    const pointer = this.pointers.get(key) ?? (await this.createPointer(name, alias));
    if (alias === 'latest' && Date.now() - pointer.resolvedAt > LATEST_TTL_MS) {
      pointer.resolvedAt = Date.now();
      void this.refresh(pointer);
    }
    // Synchronous from reading the pointer to leasing its version: no swap in between.
    return this.versions.acquire(versionKey(name, pointer.version));
  }

  /** An announced alias move: follow it if this server serves the alias. */
  onAliasChange(change: AliasNotification): void {
    // The version holds an alias now: it may be asked for by number from here on.
    this.permitted.add(versionKey(change.model, change.version));
    const key = pointerKey(change.model, change.alias);
    const generation = this.bump(key);
    const pointer = this.pointers.get(key);
    if (pointer) void this.swap(pointer, change.version, generation);
  }

  /** Re-resolves every served alias (after the announcement channel was down). */
  async refreshAll(): Promise<void> {
    await Promise.all([...this.pointers.values()].map((p) => this.refresh(p)));
  }

  /** The versions in memory (or loading), as `name@version`. */
  loaded(): string[] {
    return this.versions.keys();
  }

  served(): ServedAlias[] {
    return [...this.pointers.values()].map((p) => ({ model: p.model, alias: p.alias, version: p.version, ...(p.swapError ? { swapError: p.swapError } : {}) }));
  }

  close(): void {
    for (const p of this.pointers.values()) p.lease.release();
    this.pointers.clear();
    this.versions.clear();
  }

  /** The loading rule for `name@N`; NotFound (from the registry) when there is no such version. */
  private async checkVersion(name: string, version: number): Promise<void> {
    if (await this.options.registry.versionHeldAlias(name, version)) {
      this.permitted.add(versionKey(name, version));
      return;
    }
    this.options.metrics.versionRefusals.inc({ model: name, reason: 'not_allowed' });
    throw new VersionNotAllowedError(name, version);
  }

  private async createPointer(name: string, alias: string): Promise<Pointer> {
    const key = pointerKey(name, alias);
    let pending = this.creating.get(key);
    if (!pending) {
      pending = (async () => {
        for (;;) {
          const generation = this.generation(key);
          const record = await this.options.registry.resolveModelVersion(name, alias);
          const lease = await this.versions.acquire(versionKey(name, record.version));
          if (this.generation(key) !== generation) {
            // The alias moved while we loaded: resolve it again rather than serve a stale version.
            lease.release();
            continue;
          }
          const pointer: Pointer = { model: name, alias, version: record.version, lease, resolvedAt: Date.now() };
          this.pointers.set(key, pointer);
          if (alias !== 'latest') this.permitted.add(versionKey(name, record.version));
          this.options.metrics.versionInUse.set({ model: name, alias }, record.version);
          this.options.log('serving alias', { model: name, alias, version: record.version });
          return pointer;
        }
      })();
      const created = pending;
      this.creating.set(key, created);
      created.then(
        () => this.creating.delete(key),
        () => this.creating.delete(key),
      );
    }
    return pending;
  }

  private async refresh(pointer: Pointer): Promise<void> {
    const key = pointerKey(pointer.model, pointer.alias);
    const generation = this.bump(key);
    try {
      const record = await this.options.registry.resolveModelVersion(pointer.model, pointer.alias);
      await this.swap(pointer, record.version, generation);
    } catch (err) {
      this.options.log('could not re-resolve alias', { model: pointer.model, alias: pointer.alias, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async swap(pointer: Pointer, version: number, generation: number): Promise<void> {
    const key = pointerKey(pointer.model, pointer.alias);
    if (pointer.version === version) {
      pointer.swapError = undefined;
      return;
    }
    const labels = { model: pointer.model, alias: pointer.alias };
    try {
      const lease = await this.versions.acquire(versionKey(pointer.model, version));
      // A later move (or a refresh) superseded this one, or the pointer was dropped.
      if (this.generation(key) !== generation || this.pointers.get(key) !== pointer) {
        lease.release();
        return;
      }
      const previous = pointer.lease;
      const from = pointer.version;
      pointer.lease = lease;
      pointer.version = version;
      pointer.resolvedAt = Date.now();
      pointer.swapError = undefined;
      previous.release();
      if (pointer.alias !== 'latest') this.permitted.add(versionKey(pointer.model, version));
      this.options.metrics.versionInUse.set(labels, version);
      this.options.metrics.swaps.inc(labels);
      this.options.log('alias moved: swapped', { ...labels, from, to: version });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (this.generation(key) === generation) pointer.swapError = `cannot serve version ${version}: ${message}`;
      this.options.metrics.swapFailures.inc(labels);
      this.options.log('alias moved but the new version cannot be served; keeping the previous one', { ...labels, version, kept: pointer.version, error: message });
    }
  }

  private generation(key: string): number {
    return this.generations.get(key) ?? 0;
  }

  private bump(key: string): number {
    const next = this.generation(key) + 1;
    this.generations.set(key, next);
    return next;
  }
}

function versionKey(name: string, version: number): string {
  return `${name}@${version}`;
}

function pointerKey(name: string, alias: string): string {
  return `${name}@${alias}`;
}

function parseVersionKey(key: string): { name: string; version: number } {
  const at = key.lastIndexOf('@');
  return { name: key.slice(0, at), version: Number(key.slice(at + 1)) };
}
