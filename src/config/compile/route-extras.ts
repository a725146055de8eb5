/**
 * Compiles the parts of a VirtualService HTTP rule beyond its match and
 * destinations: fault injection, CORS, mirroring and the Isthmus sticky
 * cohort annotation.
 */
import type { z } from "zod";
import { durationMs } from "../duration.ts";
import type { CorsPolicy, HTTPFaultInjection, HTTPRoute } from "../schema/networking.ts";
import type { CohortDef, CorsDef, FaultDef, MirrorDef, StringMatchDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { FieldPath } from "./diagnostics.ts";
import { compileStringMatch } from "./matchers.ts";
import type { ServiceRegistry } from "./services.ts";

type Fail = (path: FieldPath, message: string) => void;

/** gRPC status names (Istio's `abort.grpcStatus` takes the name, not the number). */
export const GRPC_STATUS: Record<string, number> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Istio's validatePercentage: 0, or between 0.0001 and 100. */
function percent(value: number | undefined, path: FieldPath, fail: Fail): number | undefined {
  if (value === undefined) return undefined;
  if (value !== 0 && (value < 0.0001 || value > 100)) fail(path, "expected 0 or a percentage between 0.0001 and 100");
  return value;
}

/**
 * Fault injection. A missing percentage means 0% — no fault — which is the
 * opposite of mirroring's default (§7.10).
 */
export function compileFault(fault: z.infer<typeof HTTPFaultInjection>, path: FieldPath, fail: Fail): FaultDef | undefined {
  const out: FaultDef = {};
  if (fault.delay) {
    const d = fault.delay;
    if (d.fixedDelay === undefined) {
      if (d.exponentialDelay === undefined) fail([...path, "delay", "fixedDelay"], "expected fixedDelay");
    } else {
      const ms = durationMs(d.fixedDelay); // at least 1ms: the schema (ProxyDuration) refuses less
      const p = percent(d.percentage?.value ?? d.percent, [...path, "delay", "percentage"], fail) ?? 0;
      if (p > 0) out.delay = { ms, percent: p };
    }
  }
  if (fault.abort) {
    const a = fault.abort;
    const p = percent(a.percentage?.value, [...path, "abort", "percentage"], fail) ?? 0;
    if (a.httpStatus !== undefined) {
      if (a.httpStatus < 200 || a.httpStatus > 599) fail([...path, "abort", "httpStatus"], "expected an HTTP status between 200 and 599");
      if (p > 0) out.abort = { status: a.httpStatus, percent: p };
    } else if (a.grpcStatus !== undefined) {
      const code = GRPC_STATUS[a.grpcStatus];
      if (code === undefined) fail([...path, "abort", "grpcStatus"], `expected a gRPC status name (${Object.keys(GRPC_STATUS).join(", ")}), got "${a.grpcStatus}"`);
      else if (p > 0) out.abort = { status: 200, grpcStatus: code, percent: p };
    } else if (a.http2Error === undefined) {
      fail([...path, "abort"], "expected httpStatus or grpcStatus");
    }
  }
  return out.delay || out.abort ? out : undefined;
}

/** CORS (§1.12): origins as string matches; `allowOrigin` (deprecated) as exact ones. */
export function compileCors(cors: z.infer<typeof CorsPolicy>, path: FieldPath, fail: Fail): CorsDef | undefined {
  const origins: StringMatchDef[] = [];
  (cors.allowOrigins ?? []).forEach((m, i) => {
    const compiled = compileStringMatch(m, [...path, "allowOrigins", i], fail);
    if (compiled) origins.push(compiled);
  });
  for (const o of cors.allowOrigin ?? []) origins.push({ type: "exact", value: o });
  const out: CorsDef = { allowOrigins: origins, unmatchedPreflights: cors.unmatchedPreflights === "IGNORE" ? "IGNORE" : "FORWARD" };
  if (cors.allowMethods?.length) out.allowMethods = cors.allowMethods.join(",");
  if (cors.allowHeaders?.length) out.allowHeaders = cors.allowHeaders.join(",");
  if (cors.exposeHeaders?.length) out.exposeHeaders = cors.exposeHeaders.join(",");
  if (cors.maxAge !== undefined) out.maxAge = String(Math.floor(durationMs(cors.maxAge) / 1000));
  if (cors.allowCredentials !== undefined) out.allowCredentials = cors.allowCredentials;
  return out;
}

/**
 * Mirrors: `mirror` with `mirrorPercentage` (or the deprecated integer
 * `mirrorPercent`), or `mirrors[]` each with its own percentage. An absent
 * percentage means 100%; an explicit 0 means no mirroring (§1.10).
 */
export function compileMirrors(vs: Resource<"VirtualService">, route: HTTPRoute, path: FieldPath, services: ServiceRegistry, fail: Fail): MirrorDef[] | undefined {
  const entries: { destination: NonNullable<HTTPRoute["mirror"]>; percent: number | undefined; at: FieldPath }[] = [];
  if (route.mirror) {
    const p = route.mirrorPercentage?.value ?? route.mirrorPercent;
    entries.push({ destination: route.mirror, percent: percent(p, [...path, route.mirrorPercentage ? "mirrorPercentage" : "mirrorPercent"], fail), at: [...path, "mirror"] });
  } else if (route.mirrorPercentage !== undefined || route.mirrorPercent !== undefined) {
    fail([...path, "mirrorPercentage"], "expected mirror to be set with mirrorPercentage");
  }
  route.mirrors?.forEach((m, i) => {
    entries.push({ destination: m.destination, percent: percent(m.percentage?.value, [...path, "mirrors", i, "percentage"], fail), at: [...path, "mirrors", i, "destination"] });
  });
  const out: MirrorDef[] = [];
  for (const e of entries) {
    const service = services.resolve(e.destination.host, vs.namespace);
    if (!service) {
      fail([...e.at, "host"], `expected a host declared by a ServiceEntry, got "${e.destination.host}"`);
      continue;
    }
    const port = services.selectPort(service, e.destination.port?.number);
    if (typeof port === "string") {
      fail([...e.at, e.destination.port ? "port" : "host"], port);
      continue;
    }
    const subset = e.destination.subset;
    if (subset !== undefined && !services.subsets(service).includes(subset)) {
      fail([...e.at, "subset"], `expected a subset defined by a DestinationRule for ${service.host}, got "${subset}"`);
      continue;
    }
    const p = e.percent ?? 100;
    if (p === 0) continue;
    const cluster = services.cluster(service, port, subset, e.destination.host.toLowerCase());
    const def: MirrorDef = { host: service.wildcard ? e.destination.host.toLowerCase() : service.host, port: port.number, cluster: cluster.name, percent: p };
    if (subset !== undefined) def.subset = subset;
    out.push(def);
  }
  return out.length ? out : undefined;
}

export const COHORT_ANNOTATION = "isthmus.dev/sticky-cohort";

/**
 * `isthmus.dev/sticky-cohort: header:<name>` or `cookie:<name>` on a
 * VirtualService makes its weighted picks a hash of that value, so one user
 * stays in one variant while the weights stay the same.
 */
export function compileCohort(vs: Resource<"VirtualService">, fail: Fail): CohortDef | undefined {
  const raw = vs.metadata.annotations?.[COHORT_ANNOTATION];
  if (raw === undefined) return undefined;
  const m = /^(header|cookie):([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(raw.trim());
  if (!m) {
    fail(["metadata", "annotations", COHORT_ANNOTATION], `expected "header:<name>" or "cookie:<name>", got "${raw}"`);
    return undefined;
  }
  return m[1] === "header" ? { header: (m[2] as string).toLowerCase() } : { cookie: m[2] as string };
}
