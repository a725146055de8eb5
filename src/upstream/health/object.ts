/**
 * UpstreamHealth: the Durable Object that makes upstream health a shared
 * fact rather than a per-isolate guess (one instance per gateway).
 *
 * - Isolates report outlier ejections as they happen and fetch the current
 *   view every `healthSyncInterval` (`sync`, one RPC for both). The object
 *   applies maxEjectionPercent across isolates and drops ejections once
 *   they are over.
 * - It runs the GatewayConfig `healthChecks` from its alarm: every check's
 *   endpoints are probed each `interval` (at most five at a time; a Worker
 *   invocation has six connections), and an endpoint leaves the pool after
 *   `unhealthyThreshold` failures in a row and returns after
 *   `healthyThreshold` passes. The checks come from the active snapshot in
 *   the CONFIG KV namespace.
 *
 * State lives in the object's SQLite-backed storage (the synchronous KV
 * API), so an eviction loses nothing.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../../env.ts";
import type { HealthCheckDef, HealthTargetDef } from "../../config/snapshot.ts";
import type { StoredSnapshot } from "../../config/snapshot-packing.ts";
import { bindingFetch } from "../../routing/forward.ts";
import { KEYS, type ActivePointer } from "../../config/store.ts";
import { configSource } from "../../gateway/config-source.ts";
import { healthKey, type SyncRequest, type SyncView } from "../state.ts";
import { expectedStatus, nextHealth, type TargetHealth } from "./probe.ts";

interface StoredEjection {
  cluster: string;
  endpoint: string;
  until: number;
  hostCount: number;
}

interface Stored {
  version?: string;
  checks: HealthCheckDef[];
  /** Next due time per check index. */
  due: number[];
  health: Record<string, TargetHealth>;
  ejections: StoredEjection[];
}

const STATE_KEY = "state";
/** Probes in flight at once (a Worker invocation has six connections). */
const PROBE_CONCURRENCY = 5;
/** When isolates disagree on the version, the active pointer is read at most this often. */
const CONFIG_RECHECK_MS = 5_000;

export class UpstreamHealth extends DurableObject<Env> {
  private state: Stored;
  private configCheckedAt = -Infinity;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.state = ctx.storage.kv.get<Stored>(STATE_KEY) ?? { checks: [], due: [], health: {}, ejections: [] };
  }

  /**
   * Takes an isolate's new ejections and returns the shared view.
   *
   * @example
   * const view = await env.UPSTREAM_HEALTH.getByName("isthmus").sync({ version, ejections: [], at: Date.now() });
   */
  async sync(request: SyncRequest): Promise<SyncView> {
    const now = Date.now();
    const skew = now - request.at;
    this.state.ejections = this.state.ejections.filter((e) => e.until > now);
    for (const report of request.ejections) {
      const until = report.until + skew;
      if (until <= now) continue;
      const existing = this.state.ejections.find((e) => e.cluster === report.cluster && e.endpoint === report.endpoint);
      if (existing) {
        existing.until = Math.max(existing.until, until);
        continue;
      }
      const others = this.state.ejections.filter((e) => e.cluster === report.cluster).length;
      if ((100 * (others + 1)) / report.hostCount > report.maxEjectionPercent) continue;
      this.state.ejections.push({ cluster: report.cluster, endpoint: report.endpoint, until, hostCount: report.hostCount });
    }
    if (request.version !== this.state.version && now - this.configCheckedAt >= CONFIG_RECHECK_MS) await this.loadActive(now);
    this.save();
    return this.view(now);
  }

  /**
   * Answers at once: a replica of a cluster (`isthmus serve --cluster-bucket`)
   * calls it before it first reports ready, to show that it reaches the
   * objects its peers own (its cluster key is theirs).
   *
   * @example
   * await env.UPSTREAM_HEALTH.getByName("isthmus").reach(); // true
   */
  reach(): boolean {
    return true;
  }

  /** Runs the health checks that are due and schedules the next round. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    await this.loadActive(now);
    const due = this.state.checks.flatMap((check, i) => ((this.state.due[i] ?? 0) <= now ? [i] : []));
    const probes = due.flatMap((i) => (this.state.checks[i] as HealthCheckDef).targets.map((target) => ({ i, target })));
    for (let start = 0; start < probes.length; start += PROBE_CONCURRENCY) {
      await Promise.all(probes.slice(start, start + PROBE_CONCURRENCY).map(({ i, target }) => this.probe(this.state.checks[i] as HealthCheckDef, target)));
    }
    const finished = Date.now();
    for (const i of due) this.state.due[i] = finished + (this.state.checks[i] as HealthCheckDef).intervalMs;
    this.save();
    await this.schedule();
  }

  /** The current view, as `sync` returns it. */
  private view(now: number): SyncView {
    return {
      ejections: this.state.ejections.map((e) => ({ cluster: e.cluster, endpoint: e.endpoint, until: e.until })),
      unhealthy: Object.entries(this.state.health).flatMap(([key, h]) => (h.healthy ? [] : [key])),
      at: now,
    };
  }

  private async probe(check: HealthCheckDef, target: HealthTargetDef): Promise<void> {
    const key = healthKey(check.service, check.port, `${target.address}:${target.port}`);
    const host = target.address.includes(":") && !target.address.startsWith("[") ? `[${target.address}]` : target.address;
    const url = `${target.scheme}://${host}:${target.port}${check.path}`;
    let passed = false;
    let last: string;
    try {
      const fetcher = target.mtlsBinding ? bindingFetch(this.env, target.mtlsBinding) : fetch;
      if (!fetcher) throw new Error(`binding ${target.mtlsBinding} is not configured`);
      const response = await fetcher(url, { headers: check.headers ?? [], redirect: "manual", signal: AbortSignal.timeout(check.timeoutMs) });
      await response.body?.cancel();
      passed = expectedStatus(response.status, check.expectedCodes);
      last = String(response.status);
    } catch (error) {
      last = error instanceof Error && error.name === "TimeoutError" ? "timeout" : error instanceof Error ? error.message : String(error);
    }
    const previous = this.state.health[key];
    const next = nextHealth(previous, passed, last, check, Date.now());
    if (previous && previous.healthy !== next.healthy) {
      console.log(JSON.stringify({ message: `isthmus: health check ${next.healthy ? "passing" : "failing"}`, service: check.service, endpoint: `${target.address}:${target.port}`, last }));
    }
    this.state.health[key] = next;
  }

  /** Loads the health checks of the active snapshot when the version changed. */
  private async loadActive(now: number): Promise<void> {
    this.configCheckedAt = now;
    try {
      const source = configSource(this.env);
      if (!source) return;
      const raw = await source.get(KEYS.active);
      if (raw === null) return;
      const version = (JSON.parse(raw) as ActivePointer).version;
      if (version === this.state.version) return;
      const text = await source.get(KEYS.snapshot(version));
      if (text === null) return;
      const snapshot = JSON.parse(text) as StoredSnapshot;
      const checks = snapshot.settings.healthChecks ?? [];
      const keep = new Set(checks.flatMap((c) => c.targets.map((t) => healthKey(c.service, c.port, `${t.address}:${t.port}`))));
      this.state.health = Object.fromEntries(Object.entries(this.state.health).filter(([key]) => keep.has(key)));
      this.state.checks = checks;
      this.state.due = checks.map(() => now);
      this.state.version = version;
      this.save();
      await this.schedule();
    } catch (error) {
      console.error(JSON.stringify({ message: "isthmus: the upstream health object could not load the configuration", error: error instanceof Error ? error.message : String(error) }));
    }
  }

  private async schedule(): Promise<void> {
    if (this.state.checks.length === 0) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    const next = Math.min(...this.state.due);
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next) await this.ctx.storage.setAlarm(next);
  }

  private save(): void {
    this.ctx.storage.kv.put(STATE_KEY, this.state);
  }
}
