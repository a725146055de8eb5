/**
 * examples/telemetry against the real gateway: `isthmus serve` runs the
 * bookinfo demo with isthmus-telemetry.yaml and the demo's secret file,
 * exporting to a real OTLP/HTTP receiver in place of the Collector. Every
 * metric the Grafana dashboard queries must arrive, with the labels the
 * dashboard groups by.
 *
 * Changed from the examples, for the test only: the origins' ports (free
 * ports instead of 9080-9085), the provider's endpoint (the receiver), the
 * flush interval (1s), one DestinationRule added so that an outlier
 * ejection happens, and the ratings origin refuses connections so that a
 * request is retried.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SignJWT, importJWK, type JWK } from "jose";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { send } from "../helpers/http.ts";
import { failWith, startOrigin, type Origin } from "../helpers/origin.ts";
import { pointsOf, startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";
import { baseName, dashboardQueries, metricsIn } from "../helpers/dashboard.ts";
import { readSources } from "../../src/cli/files.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const PORTS = { productpage: 9080, details: 9081, "reviews-v1": 9082, "reviews-v2": 9083, "reviews-v3": 9084, ratings: 9085 } as const;

let gw: Gateway;
let rx: OtlpReceiver;
const origins: Origin[] = [];

const OUTLIER = `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details, namespace: bookinfo}
spec:
  host: details.bookinfo.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
`;

beforeAll(async () => {
  rx = await startOtlpReceiver();
  const byPort = new Map<number, number>();
  for (const [name, port] of Object.entries(PORTS)) {
    const origin = await startOrigin(name);
    origins.push(origin);
    byPort.set(port, origin.port);
    if (name === "details") origin.respond(failWith("details", 503));
  }
  const files = [...readSources([join(ROOT, "examples/bookinfo/config")]), { path: "telemetry", text: readFileSync(join(ROOT, "examples/telemetry/isthmus-telemetry.yaml"), "utf8") }];
  const yaml =
    files
      .map((f) =>
        f.text
          .replace(/(\n\s+http: )(908\d)\b/g, (_m, lead: string, port: string) => `${lead}${byPort.get(Number(port))}`)
          .replace("http://127.0.0.1:4318", rx.url)
          .replace("flushInterval: 5s", "flushInterval: 1s"),
      )
      .join("\n---\n") + OUTLIER;
  expect(yaml).not.toMatch(/http: 908\d/);
  expect(yaml).toContain(rx.url);
  gw = await startGateway(yaml, { command: "serve", args: ["--env-file", join(ROOT, "examples/telemetry/dev.vars.example")] });
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([...origins.map((o) => o.close()), rx?.close()]);
});

const bookinfo = (path: string, headers: Record<string, string> = {}) => send(gw.url, path, { host: "bookinfo.local", headers });

async function demoToken(): Promise<string> {
  const issuer = JSON.parse(readFileSync(join(ROOT, "examples/bookinfo/demo-issuer.json"), "utf8")) as { issuer: string; jwk: JWK };
  const key = await importJWK(issuer.jwk, "RS256");
  return new SignJWT({}).setProtectedHeader({ alg: "RS256", kid: issuer.jwk.kid ?? "bookinfo-demo" }).setIssuer(issuer.issuer).setSubject("jason").setAudience("bookinfo").setIssuedAt().setExpirationTime("10m").sign(key);
}

it("exports every metric the dashboard queries, with the labels it uses, to the collector with the demo's header", async () => {
  for (let i = 0; i < 3; i++) expect((await bookinfo("/productpage")).status).toBe(200);
  expect((await bookinfo("/reviews/1", { "end-user": "jason" })).status).toBe(200);
  // A 503 from details: the test's DestinationRule ejects its endpoint.
  expect((await bookinfo("/details/1")).status).toBe(503);
  // ratings refuses connections: Istio's default retry policy retries connect failures.
  const ratings = origins.find((o) => o.name === "ratings") as Origin;
  await ratings.refuse();
  expect((await bookinfo("/ratings/1")).status).toBe(503);
  const token = await demoToken();
  expect((await bookinfo("/api/v1/products", { authorization: `Bearer ${token}` })).status).toBe(200);

  const wanted = new Map<string, Set<string>>();
  for (const q of dashboardQueries()) {
    const labels = [...q.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) => (m[1] as string).split(",").map((l) => l.trim())).filter((l) => l && l !== "le");
    for (const name of metricsIn(q.expr)) {
      const base = baseName(name);
      const set = wanted.get(base) ?? new Set<string>();
      for (const l of labels) set.add(l);
      wanted.set(base, set);
    }
  }
  expect(wanted.size).toBeGreaterThanOrEqual(8);
  const missing = () =>
    [...wanted].flatMap(([name, labels]) => {
      const points = pointsOf(rx.exports).filter((p) => p.name === name);
      if (points.length === 0) return [`${name}: not received`];
      return [...labels].filter((l) => !points.some((p) => l in p.attributes)).map((l) => `${name}: no point with label ${l}`);
    });
  // Everything but the dropped count arrives from the requests above.
  const dropped = "isthmus_telemetry_dropped_total";
  await rx.waitFor(() => missing().filter((m) => !m.startsWith(dropped)).length === 0, 15_000).catch(() => undefined);
  expect(missing().filter((m) => !m.startsWith(dropped))).toEqual([]);

  // A collector that refuses an export: what it lost is counted once it is back.
  rx.setMode({ type: "fail", status: 400 });
  await bookinfo("/productpage");
  await rx.waitFor(() => gw.output().includes("telemetry export failed"), 15_000);
  rx.setMode({ type: "ok" });
  await bookinfo("/productpage");

  await rx.waitFor(() => missing().length === 0, 15_000).catch(() => undefined);
  expect(missing()).toEqual([]);

  const requests = pointsOf(rx.exports).filter((p) => p.name === "istio_requests_total");
  expect(requests.find((p) => p.attributes.destination_service === "reviews.bookinfo.svc.cluster.local")?.attributes).toMatchObject({ reporter: "source", destination_version: "v2" });
  expect(requests.some((p) => p.attributes.destination_service === "details.bookinfo.svc.cluster.local" && p.attributes.response_code === "503")).toBe(true);
  const header = /^OTLP_AUTHORIZATION=(.*)$/m.exec(readFileSync(join(ROOT, "examples/telemetry/dev.vars.example"), "utf8"))?.[1];
  expect(rx.exports.find((e) => e.signal === "metrics")?.headers.authorization).toBe(header);
}, 60_000);
