/**
 * The upstream state one isolate keeps: outlier detectors and circuit
 * breakers per cluster (per isolate, as Envoy's are per proxy), plus the
 * shared view it exchanges with the UpstreamHealth Durable Object: the
 * ejections other isolates made and the results of active health checks.
 *
 * No Durable Object call happens on the request path. An ejection is
 * reported as it happens (in waitUntil); otherwise the view is refreshed
 * in the background every `healthSyncInterval`, and only while the
 * configuration has outlier detection or health checks.
 */
import type { ClusterDef, EndpointDef, Snapshot } from "../config/snapshot.ts";
import { ClusterLimits } from "./limits.ts";
import { OutlierDetector, type Ejection, type Observation } from "./outlier.ts";

/** What the shared state reads of a snapshot (either stored layout has it). */
type SnapshotHead = Pick<Snapshot, "version" | "settings" | "clusters">;

/** An ejection as shared between isolates. */
export interface EjectionReport {
  cluster: string;
  endpoint: string;
  until: number;
  /** Cluster size and cap, so the Durable Object can apply maxEjectionPercent across isolates. */
  hostCount: number;
  maxEjectionPercent: number;
}

export interface SyncRequest {
  /** The snapshot version the isolate serves (the Durable Object loads its health checks). */
  version: string;
  ejections: EjectionReport[];
  /** The isolate's clock when it sent the request (the times in `ejections` are on it). */
  at: number;
}

export interface SyncView {
  ejections: { cluster: string; endpoint: string; until: number }[];
  /** Health-check keys (`service|port|transport|address:port`, see healthKey) of endpoints failing their checks. */
  unhealthy: string[];
  /** The Durable Object's clock when it answered. */
  at: number;
}

/** The isolate's side of the exchange (a Durable Object stub in production). */
export interface HealthExchange {
  sync(request: SyncRequest): Promise<SyncView>;
}

/** `address:port`, how endpoints are identified in ejections and health checks. */
export function endpointKey(e: EndpointDef): string {
  return `${e.address}:${e.port}`;
}

/**
 * How a cluster reaches its endpoints, as far as a probe's outcome goes:
 * `http`, `https`, or `https+BINDING` with a client certificate. One
 * endpoint reached over two transports (a plain subset and a tls SIMPLE
 * one) has a health-check result for each.
 *
 * @example
 * transportKey("https", "ORIGIN_CERT") // "https+ORIGIN_CERT"
 */
export function transportKey(scheme: "http" | "https", mtlsBinding: string | undefined): string {
  return mtlsBinding === undefined ? scheme : `${scheme}+${mtlsBinding}`;
}

/**
 * The key of an endpoint's health-check result over one transport.
 *
 * @example
 * healthKey("app.shop.internal", 80, "https", "10.0.0.1:8443") // "app.shop.internal|80|https|10.0.0.1:8443"
 */
export function healthKey(service: string, port: number, transport: string, endpoint: string): string {
  return `${service}|${port}|${transport}|${endpoint}`;
}

/** The key of a cluster endpoint's health-check result: over the cluster's own transport. */
function clusterHealthKey(cluster: ClusterDef, endpoint: string): string {
  return healthKey(cluster.service, cluster.port, transportKey(cluster.scheme, cluster.mtlsBinding), endpoint);
}

/** A sync stuck longer than this (its request's waitUntil was cut short) no longer blocks the next one. */
const STALE_SYNC_MS = 10_000;

export interface UpstreamStateOptions {
  exchange?: HealthExchange;
  now?: () => number;
  log?: (message: string, fields: Record<string, unknown>) => void;
}

export class UpstreamState {
  private readonly detectors = new Map<string, OutlierDetector>();
  private readonly limitsByCluster = new Map<string, ClusterLimits>();
  private remoteEjections = new Map<string, Map<string, number>>();
  private unhealthy = new Set<string>();
  private pending: EjectionReport[] = [];
  private syncedAt = -Infinity;
  private syncingSince: number | undefined;
  lastSync?: { at: number; error?: string };
  private readonly exchange: HealthExchange | undefined;
  private readonly now: () => number;
  private readonly log: (message: string, fields: Record<string, unknown>) => void;

  constructor(options: UpstreamStateOptions = {}) {
    this.exchange = options.exchange;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? ((message, fields) => console.error(JSON.stringify({ message, ...fields })));
  }

  /** The circuit breaker of a cluster. */
  limits(cluster: string): ClusterLimits {
    let l = this.limitsByCluster.get(cluster);
    if (!l) {
      l = new ClusterLimits();
      this.limitsByCluster.set(cluster, l);
    }
    return l;
  }

  /** Whether an endpoint may take traffic: not ejected here or elsewhere, not failing its health check. */
  healthy(cluster: ClusterDef, endpoint: EndpointDef, now = this.now()): boolean {
    const key = endpointKey(endpoint);
    if (cluster.healthCheck !== undefined && this.unhealthy.has(clusterHealthKey(cluster, key))) return false;
    if (!cluster.outlierDetection) return true;
    if (this.detector(cluster, now).isEjected(key, cluster.outlierDetection, now)) return false;
    const until = this.remoteEjections.get(cluster.name)?.get(key);
    return until === undefined || until <= now;
  }

  /**
   * Feeds an attempt's result to the cluster's outlier detector. An
   * ejection is reported to the other isolates right away.
   */
  observe(cluster: ClusterDef, endpoint: EndpointDef, observation: Observation, waitUntil: (p: Promise<unknown>) => void, version: string): Ejection | undefined {
    const def = cluster.outlierDetection;
    if (!def) return undefined;
    const now = this.now();
    const key = endpointKey(endpoint);
    const detector = this.detector(cluster, now);
    const elsewhere = this.ejectedElsewhere(cluster.name, key, now, (k) => detector.isEjected(k, def, now));
    const ejection = detector.observe(key, observation, def, cluster.endpoints.length, now, elsewhere);
    if (ejection) {
      this.log("isthmus: outlier ejected", { cluster: cluster.name, endpoint: key, reason: ejection.reason, until: new Date(ejection.until).toISOString() });
      this.pending.push({ cluster: cluster.name, endpoint: key, until: ejection.until, hostCount: cluster.endpoints.length, maxEjectionPercent: def.maxEjectionPercent });
      this.sync(version, waitUntil);
    }
    return ejection;
  }

  /** Refreshes the shared view in the background when it is due. Call once per request. */
  maybeSync(snapshot: SnapshotHead, waitUntil: (p: Promise<unknown>) => void): void {
    if (!this.exchange || !needsSharedState(snapshot)) return;
    const interval = snapshot.settings.healthSyncMs ?? 2_000;
    if (this.now() - this.syncedAt >= interval) this.sync(snapshot.version, waitUntil);
  }

  /** What this isolate knows about a cluster's endpoints, for the admin endpoint. */
  describe(cluster: ClusterDef): Record<string, unknown>[] {
    const now = this.now();
    return cluster.endpoints.map((e) => {
      const key = endpointKey(e);
      const out: Record<string, unknown> = { endpoint: key, healthy: this.healthy(cluster, e, now) };
      if (e.locality) out.locality = e.locality;
      if (cluster.outlierDetection) {
        const s = this.detector(cluster, now).state(key, cluster.outlierDetection, now);
        out.outlier = { ...s, until: s.until !== undefined ? new Date(s.until).toISOString() : undefined };
        const remote = this.remoteEjections.get(cluster.name)?.get(key);
        if (remote !== undefined && remote > now) out.ejectedElsewhereUntil = new Date(remote).toISOString();
      }
      if (cluster.healthCheck !== undefined) out.healthCheck = this.unhealthy.has(clusterHealthKey(cluster, key)) ? "failing" : "passing";
      return out;
    });
  }

  private detector(cluster: ClusterDef, now: number): OutlierDetector {
    let d = this.detectors.get(cluster.name);
    if (!d) {
      d = new OutlierDetector(cluster.outlierDetection as NonNullable<ClusterDef["outlierDetection"]>, now);
      this.detectors.set(cluster.name, d);
    }
    return d;
  }

  /** Endpoints other isolates ejected that this one has not (those count already). */
  private ejectedElsewhere(cluster: string, except: string, now: number, ejectedHere: (key: string) => boolean): number {
    let n = 0;
    for (const [key, until] of this.remoteEjections.get(cluster) ?? []) if (key !== except && until > now && !ejectedHere(key)) n++;
    return n;
  }

  private sync(version: string, waitUntil: (p: Promise<unknown>) => void): void {
    const exchange = this.exchange;
    if (!exchange) {
      this.pending = [];
      return;
    }
    const now = this.now();
    if (this.syncingSince !== undefined && now - this.syncingSince < STALE_SYNC_MS) return;
    this.syncingSince = now;
    const reports = this.pending;
    this.pending = [];
    waitUntil(
      exchange.sync({ version, ejections: reports, at: now }).then(
        (view) => {
          this.apply(view);
          this.syncingSince = undefined;
          this.syncedAt = this.now();
          // Ejections made while this exchange was in flight go out now.
          if (this.pending.length > 0) this.sync(version, waitUntil);
        },
        (error: unknown) => {
          // Keep the reports for the next exchange; the local view keeps working meanwhile.
          this.pending = [...reports, ...this.pending].slice(-100);
          this.syncingSince = undefined;
          this.syncedAt = this.now();
          const message = error instanceof Error ? error.message : String(error);
          this.lastSync = { at: this.now(), error: message };
          this.log("isthmus: upstream health exchange failed", { error: message });
        },
      ),
    );
  }

  private apply(view: SyncView): void {
    // The Durable Object's clock may differ from this isolate's; shift its times onto ours.
    const skew = this.now() - view.at;
    const ejections = new Map<string, Map<string, number>>();
    for (const e of view.ejections) {
      let m = ejections.get(e.cluster);
      if (!m) {
        m = new Map();
        ejections.set(e.cluster, m);
      }
      m.set(e.endpoint, e.until + skew);
    }
    this.remoteEjections = ejections;
    this.unhealthy = new Set(view.unhealthy);
    this.lastSync = { at: this.now() };
  }
}

const needs = new WeakMap<SnapshotHead, boolean>();

/** True when the configuration has anything to share between isolates. */
export function needsSharedState(snapshot: SnapshotHead): boolean {
  let n = needs.get(snapshot);
  if (n === undefined) {
    n = (snapshot.settings.healthChecks?.length ?? 0) > 0 || Object.values(snapshot.clusters).some((c) => c.outlierDetection !== undefined);
    needs.set(snapshot, n);
  }
  return n;
}

const fallbacks = new WeakMap<object, UpstreamState>();

/**
 * The upstream state of a pipeline's dependencies: the one it was given,
 * or one kept for that dependencies object (tests, embedders).
 */
export function upstreamsOf(deps: { upstreams?: UpstreamState }): UpstreamState {
  if (deps.upstreams) return deps.upstreams;
  let state = fallbacks.get(deps);
  if (!state) {
    state = new UpstreamState();
    fallbacks.set(deps, state);
  }
  return state;
}
