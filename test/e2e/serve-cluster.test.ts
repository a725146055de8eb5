/**
 * Replicas of `isthmus serve` sharing their Durable Objects through
 * `--cluster-bucket` (workerd's cluster mode): a GLOBAL rate limit holds
 * across the replicas, as it does across Cloudflare's locations, where
 * replicas started without it each admit the whole limit.
 *
 * The bucket is a local S3-compatible server with S3's conditional writes
 * (test/helpers/s3-bucket.ts); its endpoint and credentials reach workerd
 * through the standard AWS variables, as they would in a pod.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startGateway, type Gateway } from "../helpers/gateway.ts";
import { send } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { startS3Bucket, type S3Bucket } from "../helpers/s3-bucket.ts";

const LIMIT = 4;
let app: Origin;
let bucket: S3Bucket;
let dir: string;
let clustered: Gateway[] = [];
let alone: Gateway[] = [];

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: limits, namespace: shop}
spec:
  rules:
  - name: everyone
    limits: [{requests: ${LIMIT}, unit: hour}]
    decisionTimeout: 10s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: shop}
spec:
  hosts: [svc.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app.port}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: shop}
spec:
  hosts: [shop.example.com]
  http:
  - route: [{destination: {host: svc.shop.internal}}]
`;

const AWS = (endpoint: string) => ({
  AWS_ENDPOINT_URL: endpoint,
  AWS_REGION: "auto",
  AWS_ACCESS_KEY_ID: "isthmus-test",
  AWS_SECRET_ACCESS_KEY: "isthmus-test-secret",
});

beforeAll(async () => {
  [app, bucket] = await Promise.all([startOrigin("app"), startS3Bucket("isthmus-test")]);
  dir = mkdtempSync(join(tmpdir(), "isthmus-cluster-"));
  const keyFile = join(dir, "key");
  writeFileSync(keyFile, `${"5f".repeat(32)}\n`);
  const replica = async (bucketUrl: string) =>
    startGateway(config(), {
      command: "serve",
      args: ["--cluster-bucket", bucketUrl, "--cluster-addr", `127.0.0.1:${await freePort()}`, "--cluster-key-file", keyFile],
      env: AWS(bucket.endpoint),
    });
  // Two replicas in the cluster, and two on their own, started side by side.
  [clustered, alone] = await Promise.all([Promise.all([replica("s3://isthmus-test/gateways/"), replica("s3://isthmus-test/gateways")]), Promise.all([startGateway(config(), { command: "serve" }), startGateway(config(), { command: "serve" })])]);
}, 240_000);

afterAll(async () => {
  await Promise.all([...clustered, ...alone].map((g) => g.stop()));
  await Promise.all([app?.close(), bucket?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Sends `count` requests, alternating between the replicas; the statuses in order. */
async function alternate(replicas: Gateway[], count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) statuses.push((await send((replicas[i % replicas.length] as Gateway).url, "/", { host: "shop.example.com" })).status);
  return statuses;
}

describe("isthmus serve --cluster-bucket", () => {
  it("holds a GLOBAL limit across replicas: together they admit it once, then both answer 429", async () => {
    const statuses = await alternate(clustered, 2 * LIMIT + 2);
    expect(statuses).toEqual([...Array(LIMIT).fill(200), ...Array(LIMIT + 2).fill(429)]);
    // Both replicas joined (a lease each), and one of them owns the limit's object, recorded in the bucket.
    // One replica was given the prefix with a trailing slash and one without: the same cluster.
    const keys = bucket.keys("isthmus-test");
    expect(keys.filter((k) => /^gateways\/v1\/nodes\/[0-9a-f]+\.json$/.test(k))).toHaveLength(2);
    expect(keys.filter((k) => /^gateways\/v1\/do\/.+\/own\.json$/.test(k)).length).toBeGreaterThanOrEqual(1);
    for (const g of clustered) expect(g.output()).toContain("isthmus: Durable Objects shared with the replicas of s3://isthmus-test/gateways;");
  });

  it("without it, each replica has its own objects and admits the whole limit", async () => {
    const statuses = await alternate(alone, 2 * LIMIT + 2);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2 * LIMIT);
    expect(statuses.slice(-2)).toEqual([429, 429]);
  });
});
