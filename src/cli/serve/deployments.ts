/**
 * workerd deployments in a cluster bucket, which Isthmus refuses to serve.
 *
 * A cluster bucket can also hold named deployments (`workerd deploy`): at
 * startup every instance reads the bucket's catalog and serves the
 * deployments it selects beside its own services, with the authority of
 * the instance's config — its network reach, and its named services, such
 * as the client-certificate networks of `--credentials` (workerd.capnp,
 * `ClusterConfig`). Isthmus publishes none, so a deployment there was put
 * by someone else who can write to the bucket: serve stops the replica
 * instead of running that code, unless `--cluster-allow-deployments`.
 *
 * workerd says which deployments it serves only on stderr, one line each,
 * before it serves requests; `isthmus serve` runs the exact workerd version
 * pinned in package.json, and test/e2e/serve-cluster.test.ts publishes a
 * deployment and checks the refusal, so a change of that line fails a test.
 */
import type { Readable } from "node:stream";

/** A deployment an instance serves from its cluster's catalog. */
export interface ServedDeployment {
  name: string;
  version: string;
}

/** workerd's line for each deployment it serves from the catalog (1.20261117). */
const SERVING_DEPLOYMENT = /^cluster: serving deployment "([^"]+)" at version ([0-9a-f]+)/;

/**
 * The deployment a line of workerd's stderr says the instance serves, or undefined.
 *
 * @example
 * servedDeployment('cluster: serving deployment "intruder" at version 368f15'); // { name: "intruder", version: "368f15" }
 */
export function servedDeployment(line: string): ServedDeployment | undefined {
  const m = SERVING_DEPLOYMENT.exec(line);
  return m ? { name: m[1] as string, version: m[2] as string } : undefined;
}

/** Calls `onLine` with each complete line of `stream` (without its line break). */
export function eachLine(stream: Readable, onLine: (line: string) => void): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const lines = (pending + chunk).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line.replace(/\r$/, ""));
  });
  stream.on("end", () => {
    if (pending) onLine(pending);
  });
}

/** The message serve prints when it refuses a deployment found in `bucket`. */
export function refusalMessage(bucket: string, deployment: ServedDeployment): string {
  return (
    `isthmus: refusing to serve: the cluster bucket ${bucket} holds a workerd deployment "${deployment.name}" (version ${deployment.version.slice(0, 12)}), ` +
    "which workerd would run on this replica with its network access and client certificates. Isthmus publishes no deployments: " +
    `if you did not publish it, whoever can write to the bucket did; remove it from ${bucket}/v1/deploy/catalog.json and rotate the bucket's credentials. ` +
    "To serve deployments you published beside the gateway, pass --cluster-allow-deployments."
  );
}
