/**
 * Request mirroring (Envoy's shadowing): copies of the request go to other
 * destinations fire-and-forget, in ctx.waitUntil. The primary request never
 * waits for a mirror, and a mirror's failure, status or slowness never
 * reaches the client.
 *
 * A request body is teed: the mirror's branch is read eagerly into memory
 * (so it never slows the primary stream) up to `maxBodyBytes`; past that
 * the mirror is skipped. A Content-Length over the cap skips it up front.
 *
 * A copy the mirror cluster's own security would refuse (its namespace's
 * policies stand in for the sidecar there) is skipped too: `admit`,
 * decided by the authorization stage (authz/stages.ts mirrorAdmission).
 */
import type { ClusterDef, EndpointDef, MirrorDef } from "../config/snapshot.ts";
import type { Balancer } from "./balancer.ts";
import { endpointUrl, type Fetch } from "./forward.ts";
import { concatBytes, readAtMost } from "../gateway/bytes.ts";
import { sendsNoBody } from "../upstream/request-body.ts";

/** Marks a mirrored request so the shadow service can tell; clients cannot set it (x-isthmus-* is stripped). */
export const MIRROR_HEADER = "x-isthmus-mirror";

export type MirrorOutcome = { cluster: string; outcome: "sent"; status: number } | { cluster: string; outcome: "skipped-body-too-large" | "skipped-denied" | "failed" | "no-endpoint" };

export interface MirrorPlan {
  /** The body the primary request must use (a tee branch when mirrors need the body). */
  primaryBody: ReadableStream<Uint8Array> | null;
  /** Sends the mirrors; resolves when they are done. Pass it to waitUntil. */
  run: () => Promise<MirrorOutcome[]>;
}

export interface MirrorInput {
  mirrors: readonly MirrorDef[];
  clusters: ReadonlyMap<string, ClusterDef>;
  balancer: Balancer;
  /**
   * The endpoint a copy goes to: the cluster's own load balancing, with the
   * same health, outlier ejections and locality as primary requests (Envoy
   * shadows through the cluster's load balancer).
   */
  pick: (cluster: ClusterDef) => EndpointDef | undefined;
  fetch: Fetch;
  /** The fetch for a cluster when it is not the global one (an mTLS binding); undefined skips the mirror. */
  fetchFor?: (cluster: ClusterDef) => Fetch | undefined;
  method: string;
  host: string;
  path: string;
  query: string;
  /** Request headers as sent to the primary upstream (copied, not shared). */
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
  contentLength: number | undefined;
  maxBodyBytes: number;
  timeoutMs: number;
  /** Adds headers to the copy sent to the i-th mirror (trace context); each mirror then gets its own headers. */
  decorate?: (headers: Headers, index: number) => void;
  /** Whether the mirror cluster's security lets a copy in (absent: every copy may go). */
  admit?: (cluster: string) => boolean | Promise<boolean>;
}

/** Prepares mirrors for one request: tees the body if needed. */
export function planMirrors(input: MirrorInput): MirrorPlan {
  const hasBody = input.body !== null && !sendsNoBody(input.method);
  let primaryBody = input.body;
  let mirrorBody: Promise<Uint8Array | null | "too-large"> = Promise.resolve(null);
  if (hasBody) {
    if (input.contentLength !== undefined && input.contentLength > input.maxBodyBytes) {
      mirrorBody = Promise.resolve("too-large");
    } else {
      const [a, b] = (input.body as ReadableStream<Uint8Array>).tee();
      primaryBody = a;
      mirrorBody = readCapped(b, input.maxBodyBytes);
    }
  }
  const headers = new Headers(input.headers);
  headers.set(MIRROR_HEADER, "1");
  return {
    primaryBody,
    run: async () => {
      const body = await mirrorBody;
      return Promise.all(
        input.mirrors.map(async (m, index): Promise<MirrorOutcome> => {
          if (body === "too-large") return { cluster: m.cluster, outcome: "skipped-body-too-large" };
          if (input.admit && !(await input.admit(m.cluster))) return { cluster: m.cluster, outcome: "skipped-denied" };
          const cluster = input.clusters.get(m.cluster);
          const endpoint = cluster ? input.pick(cluster) : undefined;
          if (!cluster || !endpoint) return { cluster: m.cluster, outcome: "no-endpoint" };
          const fetchFn = input.fetchFor ? input.fetchFor(cluster) : input.fetch;
          if (!fetchFn) return { cluster: m.cluster, outcome: "failed" };
          const done = input.balancer.begin(cluster, endpoint);
          let sent = headers;
          if (input.decorate) {
            sent = new Headers(headers);
            input.decorate(sent, index);
          }
          try {
            const res = await fetchFn(endpointUrl(cluster, endpoint, input.host, input.path, input.query), {
              method: input.method,
              headers: sent,
              body: body,
              redirect: "manual",
              signal: AbortSignal.timeout(input.timeoutMs),
            });
            await res.body?.cancel();
            return { cluster: m.cluster, outcome: "sent", status: res.status };
          } catch {
            return { cluster: m.cluster, outcome: "failed" };
          } finally {
            done();
          }
        }),
      );
    },
  };
}

/** Reads a stream fully if it stays within `max` bytes; cancels it otherwise. */
async function readCapped(stream: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array | "too-large"> {
  const reader = stream.getReader();
  try {
    const head = await readAtMost(reader, max);
    if (head.done) return concatBytes(head.chunks, head.size);
    await reader.cancel();
  } catch {
    // A body that fails to read is not mirrored, as one too large is not.
  }
  return "too-large";
}

/** Picks which mirrors fire for a request by their percentages. */
export function selectMirrors(mirrors: readonly MirrorDef[], random: () => number): MirrorDef[] {
  return mirrors.filter((m) => m.percent >= 100 || random() * 100 < m.percent);
}
