/**
 * Content-addressed version ids: the same input always yields the same id.
 */

/** First 12 hex characters of the SHA-256 of the value's JSON. */
export async function contentVersion(value: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest).slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
