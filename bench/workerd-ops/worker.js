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
    return Response.json(out);
  },
};
