/**
 * Path and host normalization, done once per request (Istio's
 * pathNormalization options, §3.3 of the semantics reference). The result
 * is what routing, authorization and the upstream all see.
 *
 * The URL parser of the runtime has already removed the fragment, resolved
 * dot segments and turned `\` into `/` in the raw path; these functions
 * apply the rest of the chosen option on top.
 */
import type { PathNormalization } from "../config/snapshot.ts";

export type NormalizeResult = { ok: true; path: string } | { ok: false; reason: string };

const UNRESERVED = /%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aAfF]|6[1-9a-fA-F]|7[0-9aAeE])/g;

/**
 * Normalizes a URL path.
 * @example
 * normalizePath("/a//b/%2e%2e/c%2Fd", "DECODE_AND_MERGE_SLASHES") // { ok: true, path: "/a/c/d" }
 */
export function normalizePath(rawPath: string, mode: PathNormalization): NormalizeResult {
  if (/%00/.test(rawPath)) return { ok: false, reason: "path contains an encoded NUL (%00)" };
  if (/[\x00-\x1f\x7f]/.test(rawPath)) return { ok: false, reason: "path contains a control character" };
  if (mode === "NONE") return { ok: true, path: rawPath };
  let path = rawPath;
  if (mode === "DECODE_AND_MERGE_SLASHES") path = path.replace(/%2[fF]/g, "/").replace(/%5[cC]/g, "\\");
  // Each step runs only when its input can occur: most paths have no escape, backslash or dot segment.
  if (path.includes("%")) path = path.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  if (path.includes("\\")) path = path.replace(/\\/g, "/");
  // A "." or ".." segment is either the first one or follows a "/".
  if (path.startsWith(".") || path.includes("/.")) path = removeDotSegments(path);
  if (mode === "MERGE_SLASHES" || mode === "DECODE_AND_MERGE_SLASHES") path = path.replace(/\/{2,}/g, "/");
  if (!path.startsWith("/")) path = `/${path}`;
  return { ok: true, path };
}

/** RFC 3986 §5.2.4. */
export function removeDotSegments(path: string): string {
  const input = path.split("/");
  const output: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const segment = input[i] as string;
    const last = i === input.length - 1;
    if (segment === ".") {
      if (last) output.push("");
    } else if (segment === "..") {
      if (output.length > 1) output.pop();
      if (last) output.push("");
    } else {
      output.push(segment);
    }
  }
  const joined = output.join("/");
  return joined.startsWith("/") ? joined : `/${joined}`;
}

export type HostResult = { ok: true; host: string; authority: string } | { ok: false; reason: string };

/**
 * Splits and canonicalizes a Host header: lower case, no trailing dot; a
 * port the client wrote is checked and kept in the authority only. The port
 * that policies and routes match is the listener's (RequestFacts.port),
 * which a client cannot choose as it can the Host header's.
 *
 * @example
 * normalizeHost("App.Example.COM.:08080") // { ok: true, host: "app.example.com", authority: "app.example.com:8080" }
 */
export function normalizeHost(hostHeader: string): HostResult {
  const raw = hostHeader.trim().toLowerCase();
  if (!raw) return { ok: false, reason: "missing Host header" };
  let host = raw;
  let portText: string | undefined;
  if (raw.startsWith("[")) {
    const end = raw.indexOf("]");
    if (end < 0) return { ok: false, reason: "invalid IPv6 host" };
    host = raw.slice(0, end + 1);
    const rest = raw.slice(end + 1);
    if (rest) {
      if (!rest.startsWith(":")) return { ok: false, reason: "invalid Host header" };
      portText = rest.slice(1);
    }
  } else {
    const colon = raw.lastIndexOf(":");
    if (colon >= 0) {
      host = raw.slice(0, colon);
      portText = raw.slice(colon + 1);
    }
  }
  while (host.endsWith(".")) host = host.slice(0, -1);
  if (!host || !/^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$/.test(host)) return { ok: false, reason: "invalid Host header" };
  if (portText === undefined) return { ok: true, host, authority: host };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return { ok: false, reason: "invalid port in Host header" };
  return { ok: true, host, authority: `${host}:${Number(portText)}` };
}
