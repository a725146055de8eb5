// The bare passthrough Worker plus one Durable Object RPC per request, the
// way a GLOBAL rate limit makes one: the same object for every request (the
// bench sends one principal), a method that counts and answers at once, no
// storage. The physical limit of any Worker proxy that asks a Durable Object
// before forwarding, on this machine (the object runs in the same workerd
// process, as under `isthmus serve`).
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  count = 0;
  acquire(want) {
    this.count += want;
    return { allowed: true, count: this.count };
  }
}

export default {
  async fetch(request, env) {
    const grant = await env.COUNTER.getByName("bench").acquire(1);
    if (!grant.allowed) return new Response("limited", { status: 429 });
    const url = new URL(request.url);
    return fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, body: request.body });
  },
};
