/**
 * UpstreamHealth: the Durable Object that makes upstream health a shared
 * fact rather than a per-isolate guess (one instance per gateway).
 *
 * - Isolates report outlier ejections as they happen and fetch the current
 *   view every `healthSyncInterval` (`sync`, one RPC for both). The object
 *   applies maxEjectionPercent across isolates and drops ejections once
 *   they are over.
 * - It runs the GatewayConfig `healthChecks` from its alarm: every check's
 *   targets (an endpoint over one transport) are probed each `interval`,
 *   from a rolling pool of five (a Worker invocation has six connections;
 *   see pool.ts), and an endpoint leaves the pool after `unhealthyThreshold`
 *   failures in a row and returns after `healthyThreshold` passes. The
 *   checks come from the active snapshot in the CONFIG KV namespace, loaded
 *   on the first `sync` that names a version it has not loaded (an isolate's
 *   first exchange; under `isthmus serve` and `isthmus dev`, the readiness
 *   check's, see src/index.ts) and again on every alarm, which keeps running
 *   while the configuration has health checks, traffic or not.
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
import { healthKey, transportKey, type SyncRequest, type SyncView } from "../state.ts";
import { expectedStatus, nextHealth, type TargetHealth } from "./probe.ts";
import { nextDue, runProbes, type PoolProbe } from "./pool.ts";

interface StoredEjection {
  cluster: string;
  endpoint: string;
  until: number;
  hostCount: number;
}

interface Stored {
  version?: string;
  checks: HealthCheckDef[];
  /** Next due time per probe (health key); a probe without one is due now. */
  due: Record<string, number>;
  health: Record<string, TargetHealth>;
  ejections: StoredEjection[];
}

const STATE_KEY = "state";
/** Probes in flight at once (a Worker invocation has six connections). */
const PROBE_CONCURRENCY = 5;
/** When isolates disagree on the version, the active pointer is read at most this often. */
const CONFIG_RECHECK_MS = 5_000;
/** One alarm starts probes for at most this long, then sets the alarm again (it runs on, bounded). */
const ALARM_BUDGET_MS = 30_000;

/** One probe: a check's target, under its health key. */
interface Probe extends PoolProbe {
  target: HealthTargetDef;
}

/** Every probe of the checks, in check and target order. */
function probesOf(checks: readonly HealthCheckDef[]): Probe[] {
  return checks.flatMap((check, i) => check.targets.map((target) => ({ key: targetKey(check, target), check: i, intervalMs: check.intervalMs, target })));
}

/** The health key of a check's target: the one the clusters reaching it over that transport look up. */
function targetKey(check: HealthCheckDef, target: HealthTargetDef): string {
  return healthKey(check.service, check.port, transportKey(target.scheme, target.mtlsBinding), `${target.address}:${target.port}`);
}

export class UpstreamHealth extends DurableObject<Env> {
  private state: Stored;
  private probes: Probe[];
  private configCheckedAt = -Infinity;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const stored = ctx.storage.kv.get<Stored>(STATE_KEY);
    this.state = stored ?? { checks: [], due: {}, health: {}, ejections: [] };
    if (Array.isArray(this.state.due)) {
      // Stored before due times were per probe (and health keys named the transport): reload the checks.
      this.state.due = {};
      delete this.state.version;
    }
    this.probes = probesOf(this.state.checks);
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

  /**
   * Runs the probes that are due, and those coming due while others are in
   * flight (for up to ALARM_BUDGET_MS), then sets the alarm for the next.
   */
  override async alarm(): Promise<void> {
    await this.loadActive(Date.now());
    await runProbes(
      async () => {
        // A long alarm still notices a new configuration as soon as a sync would.
        if (Date.now() - this.configCheckedAt >= CONFIG_RECHECK_MS) await this.loadActive(Date.now());
        return { probes: this.probes, due: this.state.due };
      },
      (p) => this.probe(p),
      { now: () => Date.now(), wait: (ms) => scheduler.wait(ms) },
      { concurrency: PROBE_CONCURRENCY, budgetMs: ALARM_BUDGET_MS },
    );
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

  private async probe({ key, check: index, target }: Probe): Promise<void> {
    const check = this.state.checks[index];
    if (!check) return;
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
    // The configuration changed while this probe was in flight and no longer has it.
    if (this.state.checks[index] !== check) return;
    const previous = this.state.health[key];
    const next = nextHealth(previous, passed, last, check, Date.now());
    this.state.health[key] = next;
    if (previous && previous.healthy !== next.healthy) {
      console.log(JSON.stringify({ message: `isthmus: health check ${next.healthy ? "passing" : "failing"}`, service: check.service, endpoint: `${target.address}:${target.port}`, transport: transportKey(target.scheme, target.mtlsBinding), last }));
      this.save();
    }
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
      const probes = probesOf(checks);
      const keep = new Set(probes.map((p) => p.key));
      this.state.health = Object.fromEntries(Object.entries(this.state.health).filter(([key]) => keep.has(key)));
      this.state.checks = checks;
      // A new configuration is probed in full at once (Envoy's first pass as a cluster warms).
      this.state.due = {};
      this.probes = probes;
      this.state.version = version;
      this.save();
      await this.schedule();
    } catch (error) {
      console.error(JSON.stringify({ message: "isthmus: the upstream health object could not load the configuration", error: error instanceof Error ? error.message : String(error) }));
    }
  }

  private async schedule(): Promise<void> {
    if (this.probes.length === 0) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    const now = Date.now();
    const next = this.probes.some((p) => (this.state.due[p.key] ?? now) <= now) ? now : (nextDue(this.probes, this.state.due, now) ?? now);
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next) await this.ctx.storage.setAlarm(next);
  }

  private save(): void {
    this.ctx.storage.kv.put(STATE_KEY, this.state);
  }
}
