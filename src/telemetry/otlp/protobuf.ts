/**
 * A small protobuf encoder for the OTLP messages described in schema.ts:
 * varints, fixed 32/64-bit values, doubles, length-delimited strings,
 * bytes and nested messages, packed repeated scalars. Only encoding;
 * fields that are undefined (or empty lists) are not written.
 *
 * @example
 * const body = encodeProtobuf(TRACES_REQUEST, request); // Uint8Array for application/x-protobuf
 */
import { KeyValue, type Field, type Message } from "./schema.ts";

const utf8 = new TextEncoder();

/**
 * Encoded string-valued attributes by key and value. An export repeats
 * the same few hundred label pairs in every data point (Istio's 25 labels
 * per series), so they are encoded once per isolate. Bounded: cleared when full.
 */
const ATTRIBUTES = new Map<string, Uint8Array>();
const MAX_CACHED_ATTRIBUTES = 8192;
/** The same bytes by attribute object (attribute objects are never modified once built). */
const BY_OBJECT = new WeakMap<object, Uint8Array>();

/** Writers for nested messages, one per depth, reused (a nested message is copied into its parent at once). */
const nested: Writer[] = [];
let depth = 0;

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  varint(value: number): void {
    this.reserve(10);
    let v = value;
    while (v > 0x7f) {
      this.buf[this.length++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.length++] = v;
  }

  /** A 64-bit varint from any safe integer (negatives as two's complement, 10 bytes). */
  varint64(value: number): void {
    if (value >= 0) return this.varint(value);
    let v = BigInt.asUintN(64, BigInt(value));
    this.reserve(10);
    while (v > 0x7fn) {
      this.buf[this.length++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.length++] = Number(v);
  }

  tag(no: number, wire: number): void {
    this.varint(no * 8 + wire);
  }

  fixed64(value: bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt.asUintN(64, value), true);
    this.length += 8;
  }

  double(value: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, value, true);
    this.length += 8;
  }

  bytes(data: Uint8Array): void {
    this.varint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }

  /** The written bytes without copying (valid until the next write). */
  written(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** Milliseconds → nanoseconds as an exact integer (sub-millisecond parts kept to the microsecond). */
export function millisToNanos(ms: number): bigint {
  return Number.isInteger(ms) ? BigInt(ms) * 1_000_000n : BigInt(Math.round(ms * 1000)) * 1000n;
}

/** Lower-case hex (trace and span ids, validated where they were read or made) → bytes, without a string per byte. */
function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  return out;
}

/** A hex digit's value (`0-9`, `a-f`, `A-F`). */
function nibble(code: number): number {
  return code <= 57 ? code - 48 : (code | 32) - 87;
}

function writeField(w: Writer, field: Field, value: unknown): void {
  const type = field.type;
  if (typeof type === "function") {
    if (type === KeyValue) {
      const cached = stringAttribute(value as { key: string; value: { stringValue?: unknown } });
      if (cached) {
        w.tag(field.no, 2);
        w.bytes(cached);
        return;
      }
    }
    w.tag(field.no, 2);
    w.bytes(encodeNested(type(), value as Record<string, unknown>));
    return;
  }
  switch (type) {
    case "string":
      w.tag(field.no, 2);
      w.bytes(utf8.encode(value as string));
      return;
    case "hexBytes":
      w.tag(field.no, 2);
      w.bytes(hexBytes(value as string));
      return;
    case "bool":
      w.tag(field.no, 0);
      w.varint(value ? 1 : 0);
      return;
    case "varint":
      w.tag(field.no, 0);
      w.varint64(value as number);
      return;
    case "int64":
      w.tag(field.no, 0);
      w.varint64(value as number);
      return;
    case "fixed64":
    case "sfixed64":
      w.tag(field.no, 1);
      w.fixed64(BigInt(value as number));
      return;
    case "millisAsNanos":
      w.tag(field.no, 1);
      w.fixed64(millisToNanos(value as number));
      return;
    case "double":
      w.tag(field.no, 1);
      w.double(value as number);
      return;
    case "packedFixed64": {
      const list = value as readonly number[];
      w.tag(field.no, 2);
      w.varint(list.length * 8);
      for (const v of list) w.fixed64(BigInt(v));
      return;
    }
    case "packedDouble": {
      const list = value as readonly number[];
      w.tag(field.no, 2);
      w.varint(list.length * 8);
      for (const v of list) w.double(v);
      return;
    }
  }
}

/** A nested message's bytes, valid until the next nested message of the same depth is written. */
function encodeNested(schema: Message, value: Record<string, unknown>): Uint8Array {
  const sub = (nested[depth] ??= new Writer());
  sub.length = 0;
  depth++;
  try {
    writeMessage(sub, schema, value);
  } finally {
    depth--;
  }
  return sub.written();
}

/** The encoded KeyValue of a string-valued attribute, from the cache; undefined for other values. */
function stringAttribute(kv: { key: string; value: { stringValue?: unknown } }): Uint8Array | undefined {
  // Metric series keep their attribute objects from one export to the next: found by identity first.
  const known = BY_OBJECT.get(kv);
  if (known) return known;
  const v = kv.value;
  if (typeof v?.stringValue !== "string" || Object.keys(v).length !== 1) return undefined;
  const id = `${kv.key}\u0000${v.stringValue}`;
  let bytes = ATTRIBUTES.get(id);
  if (!bytes) {
    bytes = encodeNested(KeyValue(), kv as unknown as Record<string, unknown>).slice();
    if (ATTRIBUTES.size >= MAX_CACHED_ATTRIBUTES) ATTRIBUTES.clear();
    ATTRIBUTES.set(id, bytes);
  }
  BY_OBJECT.set(kv, bytes);
  return bytes;
}

function writeMessage(w: Writer, schema: Message, value: Record<string, unknown>): void {
  for (const field of schema) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    if (field.repeated) {
      for (const item of v as unknown[]) writeField(w, field, item);
    } else if ((field.type === "packedFixed64" || field.type === "packedDouble") && (v as unknown[]).length === 0) {
      continue;
    } else {
      writeField(w, field, v);
    }
  }
}

/** Encodes a message of the given description. */
export function encodeProtobuf(schema: Message, value: object): Uint8Array {
  const w = new Writer();
  writeMessage(w, schema, value as Record<string, unknown>);
  return w.finish();
}
