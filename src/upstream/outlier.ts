/**
 * Passive outlier detection for one cluster in one isolate, as Envoy's
 * outlier detector works for one cluster in one proxy (semantics
 * reference §2.5): consecutive 5xx, consecutive gateway errors and
 * (split mode) consecutive local-origin failures eject an endpoint inline;
 * a sweep every `interval` returns endpoints whose ejection time is over
 * and decays the ejection multiplier of healthy ones. Ejection time is
 * base × multiplier, capped at max(300 s, base); an ejection that would
 * take the ejected share above maxEjectionPercent is skipped.
 *
 * Pure state with an injected clock: the sweep is evaluated lazily on the
 * interval grid (no timers), so results are exact and testable.
 */
import type { OutlierDetectionDef } from "../config/snapshot.ts";

/** What one attempt to an endpoint showed. */
export type Observation =
  /** An upstream response (any status). */
  | { type: "status"; status: number }
  /** fetch() rejected: the connection failed or was reset before response headers. */
  | { type: "connect-failure" }
  /** No response headers before the per-try or route timeout. */
  | { type: "timeout" };

export type EjectionReason = "consecutive-5xx" | "consecutive-gateway-errors" | "consecutive-local-origin-failures";

export interface Ejection {
  endpoint: string;
  reason: EjectionReason;
  at: number;
  /** When the endpoint returns: the first sweep at or after `at` + base × multiplier. */
  until: number;
  /** The multiplier this ejection used (1 for a first ejection). */
  multiplier: number;
}

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  multiplier: number;
  ejection?: Ejection;
  lastUnejectedAt?: number;
}

/** Ticks the lazy sweep processes one by one before it fast-forwards. */
const MAX_TICKS = 1_000;

export interface EndpointOutlierState {
  ejected: boolean;
  until?: number;
  multiplier: number;
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
}

export class OutlierDetector {
  private readonly hosts = new Map<string, HostState>();
  private nextSweep: number;
  private ejectedCount = 0;

  constructor(def: OutlierDetectionDef, now: number) {
    this.nextSweep = now + def.intervalMs;
  }

  /**
   * Records an attempt's result. Returns the ejection it caused, if any.
   * `ejectedElsewhere` counts endpoints of the cluster ejected by other
   * isolates (they count towards maxEjectionPercent too).
   */
  observe(endpoint: string, observation: Observation, def: OutlierDetectionDef, hostCount: number, now: number, ejectedElsewhere = 0): Ejection | undefined {
    this.sweep(def, now);
    const host = this.host(endpoint);
    let reason: EjectionReason | undefined;
    const local = observation.type !== "status";
    if (def.splitExternalLocalOriginErrors) {
      if (local) {
        host.consecutiveLocal++;
        if (host.consecutiveLocal === def.consecutiveLocalOriginFailures) reason = "consecutive-local-origin-failures";
      } else {
        host.consecutiveLocal = 0;
        reason = this.countStatus(host, observation.status, def);
      }
    } else {
      // Without the split, a local failure counts as the status Envoy maps it to.
      const status = observation.type === "status" ? observation.status : observation.type === "timeout" ? 504 : 503;
      reason = this.countStatus(host, status, def);
    }
    if (!reason || host.ejection) return undefined;
    // As Envoy's onConsecutiveErrorWorker: the counter that reached its threshold starts again whether or not
    // the ejection happens, so an endpoint maxEjectionPercent spared is tried again after as many errors more.
    resetReached(host, def);
    const ejectedPercent = (100 * (this.ejectedCount + ejectedElsewhere + 1)) / hostCount;
    if (ejectedPercent > def.maxEjectionPercent) return undefined;
    if (host.multiplier * def.baseEjectionTimeMs < def.maxEjectionTimeMs + def.baseEjectionTimeMs) host.multiplier++;
    const duration = Math.min(def.baseEjectionTimeMs * host.multiplier, def.maxEjectionTimeMs);
    const ejection: Ejection = { endpoint, reason, at: now, until: this.sweepAtOrAfter(now + duration, def), multiplier: host.multiplier };
    host.ejection = ejection;
    this.ejectedCount++;
    return ejection;
  }

  /** Whether the endpoint is ejected at `now`. */
  isEjected(endpoint: string, def: OutlierDetectionDef, now: number): boolean {
    this.sweep(def, now);
    return this.hosts.get(endpoint)?.ejection !== undefined;
  }

  /** Endpoints ejected at `now`. */
  ejected(def: OutlierDetectionDef, now: number): Ejection[] {
    this.sweep(def, now);
    return [...this.hosts.values()].flatMap((h) => (h.ejection ? [h.ejection] : []));
  }

  /** The counters and ejection of one endpoint, for the admin endpoint. */
  state(endpoint: string, def: OutlierDetectionDef, now: number): EndpointOutlierState {
    this.sweep(def, now);
    const h = this.hosts.get(endpoint);
    const out: EndpointOutlierState = {
      ejected: h?.ejection !== undefined,
      multiplier: h?.multiplier ?? 0,
      consecutive5xx: h?.consecutive5xx ?? 0,
      consecutiveGateway: h?.consecutiveGateway ?? 0,
      consecutiveLocal: h?.consecutiveLocal ?? 0,
    };
    if (h?.ejection) out.until = h.ejection.until;
    return out;
  }

  private countStatus(host: HostState, status: number, def: OutlierDetectionDef): EjectionReason | undefined {
    if (status < 500) {
      host.consecutive5xx = 0;
      host.consecutiveGateway = 0;
      return undefined;
    }
    let reason: EjectionReason | undefined;
    if (status === 502 || status === 503 || status === 504) {
      host.consecutiveGateway++;
      if (def.consecutiveGatewayErrors > 0 && host.consecutiveGateway === def.consecutiveGatewayErrors) reason = "consecutive-gateway-errors";
    } else {
      host.consecutiveGateway = 0;
    }
    host.consecutive5xx++;
    if (def.consecutive5xxErrors > 0 && host.consecutive5xx === def.consecutive5xxErrors) reason ??= "consecutive-5xx";
    return reason;
  }

  private host(endpoint: string): HostState {
    let h = this.hosts.get(endpoint);
    if (!h) {
      h = { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, multiplier: 0 };
      this.hosts.set(endpoint, h);
    }
    return h;
  }

  private sweepAtOrAfter(time: number, def: OutlierDetectionDef): number {
    if (time <= this.nextSweep) return this.nextSweep;
    return this.nextSweep + Math.ceil((time - this.nextSweep) / def.intervalMs) * def.intervalMs;
  }

  /** Runs every sweep due by `now` (Envoy's interval timer). */
  private sweep(def: OutlierDetectionDef, now: number): void {
    let ticks = 0;
    while (this.nextSweep <= now) {
      if (ticks++ >= MAX_TICKS) {
        // Idle for a long time: every ejection is over and every multiplier has decayed by the skipped ticks.
        const skipped = Math.floor((now - this.nextSweep) / def.intervalMs) + 1;
        this.nextSweep += skipped * def.intervalMs;
        for (const h of this.hosts.values()) {
          if (h.ejection) this.uneject(h, this.nextSweep - def.intervalMs);
          h.multiplier = Math.max(0, h.multiplier - skipped);
        }
        return;
      }
      this.tick(this.nextSweep, def);
      this.nextSweep += def.intervalMs;
    }
  }

  private tick(at: number, def: OutlierDetectionDef): void {
    for (const h of this.hosts.values()) {
      if (!h.ejection) {
        if (h.lastUnejectedAt !== undefined && at - h.lastUnejectedAt >= def.intervalMs && h.multiplier > 0) h.multiplier--;
        continue;
      }
      if (at >= h.ejection.until) this.uneject(h, at);
    }
  }

  private uneject(h: HostState, at: number): void {
    h.ejection = undefined;
    h.lastUnejectedAt = at;
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
    h.consecutiveLocal = 0;
    this.ejectedCount--;
  }
}

/** Resets each consecutive-error counter that stands at its threshold (the ones that just asked for an ejection). */
function resetReached(host: HostState, def: OutlierDetectionDef): void {
  if (def.consecutive5xxErrors > 0 && host.consecutive5xx >= def.consecutive5xxErrors) host.consecutive5xx = 0;
  if (def.consecutiveGatewayErrors > 0 && host.consecutiveGateway >= def.consecutiveGatewayErrors) host.consecutiveGateway = 0;
  if (def.splitExternalLocalOriginErrors && host.consecutiveLocal >= def.consecutiveLocalOriginFailures) host.consecutiveLocal = 0;
}
