/**
 * What a CUSTOM check that lets a request through changes on the upstream
 * request, per provider asked:
 *
 * - the authorizer's headers named by `headersToUpstreamOnAllow` (exact,
 *   `prefix*`, `*suffix`) replace the client's values, as Envoy's
 *   `allowed_upstream_headers` do;
 * - a client header that pattern names and the authorizer did not return is
 *   removed (an Isthmus addition: it is the authorizer's output, so an
 *   origin that trusts `x-auth-request-user` never gets one a client made
 *   up), in any spelling that reads the same with `_` as `-`
 *   (`x_auth_request_user`, which CGI, WSGI and PHP read as that header),
 *   except what the check itself was sent or the gateway set:
 *   `Authorization`, the `includeRequestHeadersInCheck` names, the
 *   credentials `Cookie` and `Proxy-Authorization`, `Host` and the
 *   `Content-*` headers, headers ingress already takes from every client
 *   (`x-forwarded-*`, `x-request-id`, …), JWT output headers, and what an
 *   earlier provider set on this request. A bare `*` pattern removes nothing.
 *
 * Requests no CUSTOM provider is asked about are untouched, as in Envoy.
 */
import type { ExtAuthzDef } from "../../config/snapshot.ts";
import { dashed, strippedAtIngress } from "../../gateway/hygiene.ts";
import { headerPatterns, planOf } from "./client.ts";

/** Client headers never removed for being an authorizer output: credentials and the request's own framing. */
const NEVER_REMOVED: ReadonlySet<string> = new Set(["authorization", "proxy-authorization", "cookie", "host", "content-type", "content-length", "content-encoding", "content-language", "content-location", "content-range"]);

const removable = new WeakMap<ExtAuthzDef, (name: string) => boolean>();

/**
 * Applies one provider's allowing check (or its failOpen error, with no
 * headers) to the upstream request headers.
 * @param keep names whose current value the gateway set (JWT outputs, an earlier provider's headers)
 * @example
 * vouchUpstream(ctx.facts.headers, provider, result.upstream, (n) => sec.injectedHeaders.has(n));
 */
export function vouchUpstream(headers: Headers, provider: ExtAuthzDef, outputs: readonly (readonly [string, string])[], keep: (name: string) => boolean): void {
  const remove = removableBy(provider);
  const unvouched: string[] = [];
  headers.forEach((_, name) => {
    if (remove(name) && !keep(name)) unvouched.push(name);
  });
  for (const name of unvouched) headers.delete(name);
  for (const [name, value] of outputs) headers.set(name, value);
}

/** Which client header names are this provider's outputs and may be removed (built once per provider). */
function removableBy(provider: ExtAuthzDef): (name: string) => boolean {
  let remove = removable.get(provider);
  if (!remove) {
    // Patterns and names compared with `_` read as `-`: `x_auth_user` is the origin's `x-auth-user`.
    const outputs = headerPatterns(provider.headersToUpstreamOnAllow.filter((p) => p !== "*").map(dashed));
    const checked = planOf(provider).include;
    remove = (name) => outputs(dashed(name)) && !checked(name) && !NEVER_REMOVED.has(name) && !strippedAtIngress(name);
    removable.set(provider, remove);
  }
  return remove;
}
