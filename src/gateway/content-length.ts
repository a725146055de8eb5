/**
 * The body length a message declares.
 *
 * @example
 * declaredLength(new Headers({ "content-length": "1024" })); // 1024
 */

/** The Content-Length of a request or response as a number; undefined when absent or not a plain decimal. */
export function declaredLength(headers: Headers): number | undefined {
  return parseLength(headers.get("content-length"));
}

/** A Content-Length value as a number; undefined when absent or not a plain decimal. */
export function parseLength(value: string | null): number | undefined {
  if (value === null || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * True for a Content-Encoding that fetch() decodes (gzip, br, …): the body
 * it hands over is then longer than the Content-Length, which counts the
 * encoded bytes, so no stream of that length can carry it.
 *
 * @example
 * isEncoded("gzip") // true
 * isEncoded("identity") // false
 */
export function isEncoded(contentEncoding: string | null): boolean {
  return contentEncoding !== null && contentEncoding !== "" && contentEncoding !== "identity";
}
