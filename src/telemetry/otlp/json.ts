/**
 * OTLP/JSON encoding of the messages described in schema.ts, following the
 * JSON Protobuf Encoding rules of the OTLP specification: lowerCamelCase
 * keys, enums as integers, 64-bit integers as decimal strings, trace and
 * span ids as hex strings (not base64).
 *
 * @example
 * const body = encodeJson(METRICS_REQUEST, request); // a string for application/json
 */
import { millisToNanos } from "./protobuf.ts";
import type { Field, Message } from "./schema.ts";

function fieldValue(field: Field, value: unknown): unknown {
  const type = field.type;
  if (typeof type === "function") return messageValue(type(), value as Record<string, unknown>);
  switch (type) {
    case "int64":
    case "fixed64":
    case "sfixed64":
      return String(value);
    case "millisAsNanos":
      return millisToNanos(value as number).toString();
    case "packedFixed64":
      return (value as number[]).map(String);
    default:
      return value;
  }
}

function messageValue(schema: Message, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of schema) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    out[field.name] = field.repeated ? (v as unknown[]).map((item) => fieldValue(field, item)) : fieldValue(field, v);
  }
  return out;
}

/** Encodes a message of the given description as OTLP/JSON. */
export function encodeJson(schema: Message, value: object): string {
  return JSON.stringify(messageValue(schema, value as Record<string, unknown>));
}
