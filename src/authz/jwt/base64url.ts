/**
 * Strict base64url decoding for JWT segments: only the URL-safe alphabet,
 * no padding, no length that cannot come from an encoder. Never throws.
 */

const ALPHABET = /^[A-Za-z0-9_-]*$/;

/** Decodes a base64url segment; undefined when it is not strict base64url. */
export function decodeBase64url(segment: string): Uint8Array | undefined {
  if (!ALPHABET.test(segment) || segment.length % 4 === 1) return undefined;
  const b64 = segment.replace(/-/g, "+").replace(/_/g, "/");
  let binary: string;
  try {
    binary = atob(b64 + "===".slice((b64.length + 3) % 4));
  } catch {
    return undefined;
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Decodes a base64url segment holding UTF-8 text; undefined on bad base64 or bad UTF-8. */
export function decodeBase64urlText(segment: string): { ok: true; text: string } | { ok: false; reason: "base64" | "utf8" } {
  const bytes = decodeBase64url(segment);
  if (!bytes) return { ok: false, reason: "base64" };
  try {
    return { ok: true, text: utf8.decode(bytes) };
  } catch {
    return { ok: false, reason: "utf8" };
  }
}

/** Standard (padded) base64 of a string's UTF-8 bytes, as Envoy writes JSON claims into headers. */
export function encodeBase64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
