// Per-call cost of the runtime operations a gateway request makes, measured
// inside workerd. workerd's clock only advances across I/O, so each batch is
// bracketed by 1 ms timers and the timer's own millisecond is subtracted;
// each operation runs several batches and the fastest is kept.
const BATCH = 20000;
const REPEATS = 5;

async function perCall(fn) {
  let best = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const t0 = Date.now();
    for (let i = 0; i < BATCH; i++) fn(i);
    await new Promise((resolve) => setTimeout(resolve, 1));
    best = Math.min(best, Date.now() - t0 - 1);
  }
  return (Math.max(0, best) * 1000) / BATCH; // µs
}

// Same bracketing for an async operation (awaited one call at a time).
async function perCallAsync(fn, batch) {
  let best = Infinity;
  for (let r = 0; r < REPEATS; r++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const t0 = Date.now();
    for (let i = 0; i < batch; i++) await fn(i);
    await new Promise((resolve) => setTimeout(resolve, 1));
    best = Math.min(best, Date.now() - t0 - 1);
  }
  return (Math.max(0, best) * 1000) / batch; // µs
}

/** An RS256 (RSA-2048) signature over a JWT-sized input, and the key imported once, as the gateway caches it. */
async function rs256() {
  const pair = await crypto.subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
  const input = new TextEncoder().encode("e".repeat(300));
  const signature = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", pair.privateKey, input);
  return { key, input, signature };
}

export default {
  async fetch() {
    const headers = new Headers({ host: "app.bench.example.com", "user-agent": "isthmus-bench", accept: "application/json", "x-tenant": "t1" });
    const request = new Request("http://app.bench.example.com/api/items/7?x=1", { headers });
    const ops = [
      ["iterate 4 request headers", () => { let n = 0; for (const [k, v] of request.headers) n += k.length + v.length; return n; }],
      ["new Headers(copy of 4)", () => new Headers(request.headers)],
      ["new Headers() + 4 append", () => { const h = new Headers(); for (const [k, v] of request.headers) h.append(k, v); return h; }],
      ["headers.set", () => headers.set("x-forwarded-proto", "http")],
      ["headers.get", () => headers.get("host")],
      ["headers.delete (absent name)", () => headers.delete("x-nothing")],
      ["new URL(request.url)", () => new URL(request.url)],
      ["new Request(url, init)", () => new Request("http://127.0.0.1:9/api/items/7", { method: "GET", headers, redirect: "manual" })],
      ["new AbortController()", () => new AbortController()],
      ["new Response(null, init)", () => new Response(null, { status: 200, headers })],
      ["crypto.randomUUID()", () => crypto.randomUUID()],
      ["TextEncoder.encode(request.url)", () => new TextEncoder().encode(request.url).length],
      ["Date.now()", () => Date.now()],
    ];
    const out = [];
    for (const [name, fn] of ops) out.push({ name, us: await perCall(fn) });
    const { key, input, signature } = await rs256();
    const digestInput = new TextEncoder().encode('rule\u0000["http://idp/user-1"]');
    const asyncOps = [
      ["crypto.subtle.verify RS256 (2048-bit, key imported once)", async () => {
        if (!(await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, signature, input))) throw new Error("verify failed");
      }, 500],
      ["crypto.subtle.digest SHA-256 (a rate-limit key)", () => crypto.subtle.digest("SHA-256", digestInput), 5000],
    ];
    for (const [name, fn, batch] of asyncOps) out.push({ name, us: await perCallAsync(fn, batch) });
    return Response.json(out);
  },
};
