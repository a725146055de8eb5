/**
 * The bookinfo demo's origins: small Node HTTP servers standing in for the
 * services of Istio's bookinfo sample. productpage and reviews v2/v3 call
 * the other services back through the gateway (Host: bookinfo.local), the
 * way in-mesh calls would go through a proxy.
 *
 * Run alone: node examples/bookinfo/origins.ts [--gateway http://127.0.0.1:8787]
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export const ORIGIN_PORTS = { productpage: 9080, details: 9081, "reviews-v1": 9082, "reviews-v2": 9083, "reviews-v3": 9084, ratings: 9085 } as const;

type Handler = (req: IncomingMessage, url: URL) => Promise<{ status?: number; type?: string; body: string }>;

const BOOK = {
  id: 0,
  title: "The Comedy of Errors",
  author: "William Shakespeare",
  year: 1595,
  type: "paperback",
  pages: 200,
  publisher: "PublisherA",
  language: "English",
  "ISBN-10": "1234567890",
  "ISBN-13": "123-1234567890",
};

const REVIEWS = [
  { reviewer: "Reviewer1", text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!" },
  { reviewer: "Reviewer2", text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare." },
];

/** The headers Istio's tracing docs ask applications to propagate. */
const TRACE_HEADERS = ["x-request-id", "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"];

const json = (value: unknown) => ({ type: "application/json", body: JSON.stringify(value) });

export function startOrigins(gateway: string, host = "127.0.0.1"): Promise<Server[]> {
  // node:http rather than fetch(): fetch() may not set the Host header.
  const viaGateway = (path: string, req: IncomingMessage) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const headers: Record<string, string> = { host: "bookinfo.local" };
      // What Istio asks every application to forward, so one trace covers the whole page.
      for (const name of ["end-user", ...TRACE_HEADERS]) {
        const value = req.headers[name];
        if (typeof value === "string") headers[name] = value;
      }
      const out = request(`${gateway}${path}`, { headers, timeout: 5_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => {
          if ((res.statusCode ?? 0) >= 400) reject(new Error(`${path}: ${res.statusCode}`));
          else {
            try {
              resolve(JSON.parse(body) as Record<string, unknown>);
            } catch {
              reject(new Error(`${path}: not JSON`));
            }
          }
        });
      });
      out.on("timeout", () => out.destroy(new Error(`${path}: timed out`)));
      out.on("error", reject);
      out.end();
    });

  const reviews = (version: "v1" | "v2" | "v3"): Handler => async (req, url) => {
    const id = Number(url.pathname.split("/")[2] ?? 0);
    let stars: Record<string, number> | undefined;
    if (version !== "v1") stars = ((await viaGateway(`/ratings/${id}`, req).catch(() => ({}))) as { ratings?: Record<string, number> }).ratings;
    return json({
      id,
      podname: `reviews-${version}`,
      reviews: REVIEWS.map((r) => ({
        ...r,
        ...(stars ? { rating: { stars: stars[r.reviewer] ?? 0, color: version === "v2" ? "black" : "red" } } : {}),
      })),
    });
  };

  const handlers: Record<keyof typeof ORIGIN_PORTS, Handler> = {
    productpage: async (req, url) => {
      if (url.pathname === "/api/v1/products") return json([{ id: 0, title: BOOK.title, descriptionHtml: "A play about mistaken identities." }]);
      if (url.pathname.startsWith("/static")) return { type: "text/css", body: "body { font-family: sans-serif; }\n" };
      if (url.pathname !== "/productpage") return { status: 404, type: "text/plain", body: "not found\n" };
      const [details, revs] = await Promise.all([
        viaGateway("/details/0", req).catch((e: Error) => ({ error: e.message })),
        viaGateway("/reviews/0", req).catch((e: Error) => ({ error: e.message })),
      ]);
      const page = {
        product: BOOK.title,
        user: req.headers["end-user"] ?? null,
        details,
        reviews: revs,
        seenByProductpage: { path: url.pathname + url.search, requestId: req.headers["x-request-id"] ?? null, traceparent: req.headers.traceparent ?? null },
      };
      return json(page);
    },
    details: async (_req, url) => json({ ...BOOK, id: Number(url.pathname.split("/")[2] ?? 0) }),
    "reviews-v1": reviews("v1"),
    "reviews-v2": reviews("v2"),
    "reviews-v3": reviews("v3"),
    ratings: async (_req, url) => json({ id: Number(url.pathname.split("/")[2] ?? 0), ratings: { Reviewer1: 5, Reviewer2: 4 } }),
  };

  return Promise.all(
    (Object.keys(ORIGIN_PORTS) as (keyof typeof ORIGIN_PORTS)[]).map(
      (name) =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer((req: IncomingMessage, res: ServerResponse) => {
            const url = new URL(req.url ?? "/", "http://origin");
            handlers[name](req, url)
              .then((r) => {
                res.writeHead(r.status ?? 200, { "content-type": r.type ?? "text/plain", "x-served-by": name });
                res.end(r.body);
              })
              .catch((e: unknown) => {
                res.writeHead(500, { "content-type": "text/plain", "x-served-by": name });
                res.end(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
              });
          });
          server.keepAliveTimeout = 60_000;
          server.once("error", reject);
          server.listen(ORIGIN_PORTS[name], host, () => resolve(server));
        }),
    ),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--gateway");
  const gateway = i > 0 ? (process.argv[i + 1] ?? "http://127.0.0.1:8787") : "http://127.0.0.1:8787";
  await startOrigins(gateway);
  console.log(`bookinfo origins listening on 127.0.0.1:${Object.values(ORIGIN_PORTS).join(", ")}`);
}
