/**
 * The mark an ALLOW_ANY passthrough carries, so that a request the gateway
 * forwarded to itself (a Host naming its own address, or a name resolving
 * to it) is refused instead of forwarded again until connections run out.
 * Each isolate marks with its own random value and appends it to the marks
 * received, so a loop through several gateways is caught too.
 */

export const VIA_HEADER = "x-isthmus-via";
/** More marks than this is a loop through several gateways, or a client's header, not a chain anyone runs. */
const MAX_VIA = 8;
let ownMark: string | undefined;

/**
 * The `x-isthmus-via` a passthrough sends: the marks received plus this
 * gateway's own, or undefined when the request already carries its mark
 * (it came back) or too many. The mark is random per isolate, made on first
 * use (the Workers runtime refuses random values at global scope).
 *
 * @example
 * passthroughVia(null)        // "3f2a…" (this isolate's mark)
 * passthroughVia("9c1e…")     // "9c1e…, 3f2a…"
 * passthroughVia("9c1e…, 3f2a…") // undefined: a loop
 */
export function passthroughVia(received: string | null): string | undefined {
  ownMark ??= crypto.randomUUID();
  if (received === null || received === "") return ownMark;
  const marks = received.split(",");
  if (marks.length >= MAX_VIA || marks.some((m) => m.trim() === ownMark)) return undefined;
  return `${received}, ${ownMark}`;
}
