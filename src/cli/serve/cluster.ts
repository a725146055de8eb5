/**
 * `isthmus serve --cluster-bucket URL`: replicas of the gateway share their
 * Durable Objects through workerd's cluster mode, so a GLOBAL rate limit
 * and shared outlier ejections hold across every pod, as they do across
 * Cloudflare's locations. Each object runs on one instance at a time (its
 * owner, recorded in the bucket by a conditional write); any instance
 * forwards calls for it there over the cluster port.
 *
 * The bucket's endpoint and credentials are workerd's to read, and serve
 * passes them through untouched: for `s3://` the standard AWS variables
 * (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN or AWS_CREDENTIALS_FILE); for `gs://` (Cloud Storage)
 * the service account key GOOGLE_APPLICATION_CREDENTIALS names, else the
 * metadata server of the VM or GKE pod (Workload Identity).
 */
import { DURATION_PATTERN, durationMs } from "../../config/duration.ts";
import { CliError } from "../files.ts";
import { hostPortOption } from "../options.ts";
import { readText } from "./credentials.ts";
import { CLUSTER_PORT_SERVICE } from "./workerd-config.ts";
import type { Snapshot } from "../../config/snapshot.ts";

export interface ClusterOptions {
  /** `s3://bucket/prefix` or `gs://bucket/prefix` (without a trailing slash): where the instances' leases and the objects' ownership records live. */
  bucket: string;
  /** `host:port` this instance listens on for the other instances. */
  address: string;
  /** `host:port` the other instances reach it at, when not the bound address (a wildcard, NAT, a pod IP). */
  advertise?: string;
  /** The shared secret (at least 32 bytes) that authenticates instances to each other. */
  key: string;
  /** How long a stopping instance takes from SIGTERM to exit, handing its objects over (`--cluster-stop-timeout`; workerd's default, 8 s, when absent). */
  stopTimeoutMs?: number;
  /** For tests only (ISTHMUS_CLUSTER_TIME_DIVISOR): shortens the lease and the waits of takeovers and stops by this factor. */
  timeDivisor?: number;
  /** Serve workerd deployments the bucket's catalog selects (`--cluster-allow-deployments`); refused otherwise (./deployments.ts). */
  allowDeployments?: boolean;
}

export interface ClusterFlags {
  "cluster-bucket"?: string;
  "cluster-addr"?: string;
  "cluster-advertise"?: string;
  "cluster-key-file"?: string;
  "cluster-stop-timeout"?: string;
  "cluster-allow-deployments"?: boolean;
}

/** workerd's minimum for the cluster key. */
export const MIN_CLUSTER_KEY_BYTES = 32;

/** S3's bucket names (lowercase letters, digits, dots, hyphens), and Cloud Storage's, which also allow underscores. */
const BUCKET_URL = /^(s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|gs:\/\/[a-z0-9][a-z0-9._-]{1,61}[a-z0-9])(\/.*)?$/;

/**
 * The cluster options, checked, with the key read from its file; undefined
 * without `--cluster-bucket`. Every error names the flag and what was expected.
 *
 * @example
 * clusterOptions({ "cluster-bucket": "s3://gateways/prod/", "cluster-addr": "0.0.0.0:7000",
 *   "cluster-advertise": "10.0.3.7:7000", "cluster-key-file": "/etc/isthmus/cluster/key" });
 */
export function clusterOptions(flags: ClusterFlags, env: Record<string, string | undefined> = {}): ClusterOptions | undefined {
  const bucket = flags["cluster-bucket"];
  if (bucket === undefined) {
    const stray = (["cluster-addr", "cluster-advertise", "cluster-key-file", "cluster-stop-timeout", "cluster-allow-deployments"] as const).find((f) => flags[f] !== undefined);
    if (stray) throw new CliError(`--${stray} needs --cluster-bucket: the bucket the replicas share their Durable Objects through`, 2);
    return undefined;
  }
  if (!BUCKET_URL.test(bucket)) throw new CliError(`--cluster-bucket: expected s3://BUCKET/PREFIX (an S3-compatible bucket with conditional writes: Amazon S3, R2, MinIO) or gs://BUCKET/PREFIX (Google Cloud Storage), got ${bucket}`, 2);
  const address = flags["cluster-addr"];
  if (address === undefined) throw new CliError("--cluster-bucket needs --cluster-addr HOST:PORT: where this instance listens for the other instances (a private address)", 2);
  hostPortOption("--cluster-addr", address);
  if (/:0+$/.test(address)) throw new CliError(`--cluster-addr ${address}: expected a fixed port (the others reach this one there, and so does its readiness check)`, 2);
  const advertise = flags["cluster-advertise"];
  if (advertise !== undefined) hostPortOption("--cluster-advertise", advertise);
  if (advertise === undefined && /^(0\.0\.0\.0|\[::\]):/.test(address)) {
    throw new CliError(`--cluster-addr ${address} listens on every interface; add --cluster-advertise HOST:PORT with the address the other instances reach this one at (in Kubernetes, the pod IP)`, 2);
  }
  const keyFile = flags["cluster-key-file"];
  if (keyFile === undefined) throw new CliError("--cluster-bucket needs --cluster-key-file FILE: a secret shared by every instance, at least 32 bytes (openssl rand -hex 32)", 2);
  const key = readText(keyFile, "--cluster-key-file").trim();
  if (Buffer.byteLength(key) < MIN_CLUSTER_KEY_BYTES) {
    throw new CliError(`--cluster-key-file: ${keyFile} holds ${Buffer.byteLength(key)} bytes; expected at least ${MIN_CLUSTER_KEY_BYTES} (openssl rand -hex 32)`, 2);
  }
  // workerd appends "/v1/..." to the prefix as given, so "s3://b/p/" and "s3://b/p" would be two
  // clusters in one bucket: replicas started with either spelling must find each other.
  const stopTimeout = flags["cluster-stop-timeout"];
  const stopTimeoutMs = stopTimeout === undefined ? undefined : stopTimeoutOption(stopTimeout);
  const divisor = env.ISTHMUS_CLUSTER_TIME_DIVISOR;
  if (divisor !== undefined && !/^(?:[1-9]\d{0,2}|1000)$/.test(divisor)) {
    throw new CliError(`ISTHMUS_CLUSTER_TIME_DIVISOR: expected an integer from 1 to 1000 (for tests: it shortens the cluster's 20 s lease), got ${divisor}`, 2);
  }
  return {
    bucket: bucket.replace(/\/+$/, ""),
    address,
    ...(advertise !== undefined ? { advertise } : {}),
    key,
    ...(stopTimeoutMs !== undefined ? { stopTimeoutMs } : {}),
    ...(divisor !== undefined ? { timeDivisor: Number(divisor) } : {}),
    ...(flags["cluster-allow-deployments"] === true ? { allowDeployments: true } : {}),
  };
}

/**
 * Round trips to the bucket a GLOBAL decision should be able to wait under
 * `--cluster-bucket`: an object's first call and each move wait about five
 * (its ownership record, cleanup alarm and first write), and measured runs
 * needed about three times that to fail no decision in a rolling update
 * (docs/SELF-HOSTED.md).
 */
export const DECISION_ROUND_TRIPS = 15;

/** A `decisionTimeout` from which no note is given: a bucket ~67 ms away (another region) fits in it. */
const ROOMY_DECISION_TIMEOUT_MS = 1_000;

/**
 * Notes for the GLOBAL rate-limit rules whose `decisionTimeout` leaves a
 * clustered replica little room: under `--cluster-bucket` an object's first
 * call and each move wait on the bucket, and serve cannot measure how far
 * away it is (workerd holds the bucket's credentials). Each note names the
 * rule, the bucket distance its timeout fits, and what happens past it.
 *
 * @example
 * for (const note of decisionTimeoutNotes(snapshot)) console.error(note);
 */
export function decisionTimeoutNotes(snapshot: Pick<Snapshot, "rateLimits">): string[] {
  return (snapshot.rateLimits?.rules ?? [])
    .filter((rule) => rule.scope === "GLOBAL" && rule.timeoutMs < ROOMY_DECISION_TIMEOUT_MS)
    .map((rule) => {
      const fits = Math.max(1, Math.floor(rule.timeoutMs / DECISION_ROUND_TRIPS));
      const past = rule.failureMode === "CLOSED" ? "answered 500 (failureMode CLOSED)" : "admitted unchecked (failureMode OPEN)";
      return (
        `isthmus: note: ${rule.source} rule ${rule.name}: decisionTimeout ${rule.timeoutMs} ms fits a bucket up to ~${fits} ms away; ` +
        `with --cluster-bucket an object's first call and each move wait on the bucket (about ${DECISION_ROUND_TRIPS} round trips to be safe), ` +
        `and a decision that outlasts the timeout is ${past}. Raise decisionTimeout if the bucket is farther (docs/SELF-HOSTED.md).`
      );
    });
}

/** `--cluster-stop-timeout`: a duration from 1s to 1h, in milliseconds. */
function stopTimeoutOption(value: string): number {
  const ms = DURATION_PATTERN.test(value) ? Math.round(durationMs(value)) : NaN;
  if (!(ms >= 1_000 && ms <= 3_600_000)) {
    throw new CliError(`--cluster-stop-timeout: expected a duration from 1s to 1h, such as 25s (raise the pod's terminationGracePeriodSeconds with it), got ${value}`, 2);
  }
  return ms;
}

/**
 * The workerd command-line flags for this instance's own addresses (the
 * config file stays the same on every replica): where it listens and is
 * reached, and where its own cluster port answers it (a wildcard address
 * is reached over loopback).
 */
export function clusterArgs(cluster: ClusterOptions): string[] {
  return [
    `--cluster-addr=${cluster.address}`,
    ...(cluster.advertise !== undefined ? [`--cluster-advertise=${cluster.advertise}`] : []),
    `--external-addr=${CLUSTER_PORT_SERVICE}=${ownAddress(cluster.address)}`,
  ];
}

/** `host:port` at which this process reaches a socket bound to `address`. */
function ownAddress(address: string): string {
  if (address.startsWith("0.0.0.0:")) return `127.0.0.1:${address.slice("0.0.0.0:".length)}`;
  if (address.startsWith("[::]:")) return `[::1]:${address.slice("[::]:".length)}`;
  return address;
}
