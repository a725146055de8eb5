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
