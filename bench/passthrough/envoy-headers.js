// The bare passthrough Worker plus only the header work an Istio gateway
// (Envoy) does to every request and response, whatever its config:
// - request: one pass over the client's headers to find the ones a client
//   must not send (hop-by-hop, x-forwarded-*, x-envoy-*, x-request-id), a
//   copy without them, then X-Request-Id, X-Forwarded-For (the socket's peer,
//   as use_remote_address sets it), X-Forwarded-Proto and
//   x-envoy-attempt-count;
// - response: a copy (a fetched response's headers cannot be changed)
//   without hop-by-hop headers, with x-envoy-upstream-service-time.
// No routing, no policy, no telemetry: the floor under any Worker that keeps
// Envoy's header contract, on this machine. Isthmus's minimal config does
// this and routes.
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);
const strippable = (name) => HOP_BY_HOP.has(name) || name === "x-request-id" || name.startsWith("x-forwarded-") || name.startsWith("x-envoy-");

export default {
  async fetch(request, env) {
    const strip = [];
    // forEach: workerd's cheapest pass over a header block (no iterator result or entry array per header).
    request.headers.forEach((_, name) => {
      if (strippable(name)) strip.push(name);
    });
    const headers = new Headers(request.headers);
    for (const name of strip) headers.delete(name);
    const peer = request.cf?.clientIp ?? "";
    const url = new URL(request.url);
    headers.set("x-request-id", crypto.randomUUID());
    headers.set("x-forwarded-for", peer.slice(0, peer.lastIndexOf(":")));
    headers.set("x-forwarded-proto", url.protocol.slice(0, -1));
    headers.set("x-envoy-attempt-count", "1");
    const started = Date.now();
    const upstream = await fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, { method: request.method, headers, body: request.body, redirect: "manual" });
    const response = new Response(upstream.body, upstream);
    for (const name of HOP_BY_HOP) response.headers.delete(name);
    response.headers.set("x-envoy-upstream-service-time", String(Date.now() - started));
    return response;
  },
};
