/**
 * Pipeline stages 1 and 2: hygiene, then normalization into RequestFacts.
 * After this, every stage and the upstream see the same host, path and
 * headers.
 */
import type { GatewaySettings } from "../config/snapshot.ts";
import type { PipelineDeps } from "./context.ts";
import type { RequestFacts } from "./facts.ts";
import { sanitizeRequest } from "./hygiene.ts";
import { badRequest, type LocalReply } from "./local-reply.ts";
import { normalizeHost, normalizePath } from "./normalize.ts";

export type IngressResult = { ok: true; facts: RequestFacts } | { ok: false; reply: LocalReply };

/**
 * @param injected lower-case names of headers Isthmus itself sets from verified identities
 *   (JWT claim and payload headers, ext-authz headers): a client never gets to send them.
 */
export function ingress(request: Request, settings: GatewaySettings, deps: PipelineDeps, injected?: ReadonlySet<string>): IngressResult {
  const clean = sanitizeRequest(request, injected ? { limits: settings.limits, injected } : { limits: settings.limits });
  if (!clean.ok) return clean;

  const url = new URL(request.url);
  const scheme = url.protocol === "https:" ? "https" : "http";
  const host = normalizeHost(request.headers.get("host") ?? url.host, scheme);
  if (!host.ok) return { ok: false, reply: badRequest(400, host.reason) };
  const path = normalizePath(rawPathOf(request.url), settings.pathNormalization);
  if (!path.ok) return { ok: false, reply: badRequest(400, path.reason) };

  const headers = clean.headers;
  const remoteIp = request.headers.get("cf-connecting-ip") ?? "";
  headers.set("x-request-id", deps.requestId());
  if (remoteIp) headers.set("x-forwarded-for", remoteIp);
  headers.set("x-forwarded-proto", scheme);
  return {
    ok: true,
    facts: {
      method: request.method,
      scheme,
      host: host.host,
      port: host.port,
      authority: host.authority,
      path: path.path,
      query: url.search.slice(1),
      headers,
      remoteIp,
      receivedHeaderBytes: clean.bytes,
    },
  };
}

/**
 * The request path as the runtime's URL parser left it, before our
 * normalization, without the query and without a fragment (a Request's url
 * keeps `#...`; Envoy strips it so that routing and authorization never see
 * it, CVE-2021-32779).
 */
function rawPathOf(url: string): string {
  const afterScheme = url.indexOf("//") + 2;
  const pathStart = url.indexOf("/", afterScheme);
  if (pathStart < 0) return "/";
  let end = url.length;
  for (const mark of ["?", "#"]) {
    const at = url.indexOf(mark, pathStart);
    if (at >= 0 && at < end) end = at;
  }
  return url.slice(pathStart, end);
}
