/**
 * The subset of CEL (Common Expression Language) Isthmus evaluates where
 * Istio takes a CEL expression: Telemetry `accessLogging[].filter.expression`
 * and `metrics[].overrides[].tagOverrides{}.value`.
 *
 * - literals: integers, decimals, 'single' or "double" quoted strings,
 *   true, false, null, lists `[a, b]`
 * - attributes (Envoy's names, see ATTRIBUTES): `response.code`,
 *   `request.headers['x-user']`, …; an absent value is null
 * - `==` `!=` `<` `<=` `>` `>=`, `in` (list membership), `!`, `&&`, `||`,
 *   parentheses, `has(attribute)`, and the string methods
 *   `startsWith`, `endsWith`, `contains`
 *
 * An expression is parsed (and its attributes checked) once, at compile
 * time; hydration turns it into a function over a request's attributes.
 *
 * @example
 * const expr = parseExpression("response.code >= 500 || request.headers['x-debug'] == '1'");
 * if (expr.ok) evaluate(expr.node, (name, key) => attributesOf(request)(name, key));
 */
import { isRequestHeaderName } from "../gateway/request-header.ts";

export type Value = string | number | boolean | null | Value[];

export type Node =
  | { type: "literal"; value: Value }
  | { type: "attribute"; name: string; key?: string }
  | { type: "list"; items: Node[] }
  | { type: "not"; operand: Node }
  | { type: "and" | "or"; left: Node; right: Node }
  | { type: "compare"; op: "==" | "!=" | "<" | "<=" | ">" | ">=" | "in"; left: Node; right: Node }
  | { type: "has"; attribute: Node & { type: "attribute" } }
  | { type: "call"; method: "startsWith" | "endsWith" | "contains"; target: Node; argument: Node };

/** Attributes Isthmus provides: Envoy's attribute names, plus `request.auth.principal`. Keyed ones take `[name]`. */
export const ATTRIBUTES: Record<string, "keyed" | "plain"> = {
  "request.path": "plain",
  "request.url_path": "plain",
  "request.host": "plain",
  "request.scheme": "plain",
  "request.method": "plain",
  "request.headers": "keyed",
  "request.useragent": "plain",
  "request.id": "plain",
  "request.protocol": "plain",
  "request.query": "plain",
  "request.size": "plain",
  "request.total_size": "plain",
  "request.duration": "plain",
  "request.auth.principal": "plain",
  "response.code": "plain",
  "response.code_details": "plain",
  "response.grpc_status": "plain",
  "response.headers": "keyed",
  "response.size": "plain",
  "response.total_size": "plain",
  "source.address": "plain",
  "upstream.address": "plain",
  "xds.route_name": "plain",
  "xds.cluster_name": "plain",
  "connection.mtls": "plain",
  "connection.requested_server_name": "plain",
};

export type ParseResult = { ok: true; node: Node } | { ok: false; error: string };

type Token = { kind: "num"; value: number } | { kind: "str"; value: string } | { kind: "id"; value: string } | { kind: "op"; value: string };

const OPERATORS = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ","];

function tokenize(text: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(\.[0-9]+)?u?/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: "num", value: Number(m[0].replace(/u$/, "")) });
      i += m[0].length;
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      let out = "";
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\" && j + 1 < text.length) {
          const next = text[j + 1] as string;
          out += next === "n" ? "\n" : next === "t" ? "\t" : next;
          j += 2;
        } else {
          out += text[j];
          j++;
        }
      }
      if (j >= text.length) return `unterminated string starting at ${i + 1}`;
      tokens.push({ kind: "str", value: out });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: "id", value: m[0] });
      i += m[0].length;
      continue;
    }
    const op = OPERATORS.find((o) => text.startsWith(o, i));
    if (!op) return `unexpected "${c}" at ${i + 1}`;
    tokens.push({ kind: "op", value: op });
    i += op.length;
  }
  return tokens;
}

class Parser {
  private i = 0;
  private readonly tokens: Token[];

  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  parse(): Node {
    const node = this.or();
    if (this.i < this.tokens.length) throw new Error(`unexpected ${describe(this.tokens[this.i] as Token)}`);
    return node;
  }

  private peek(value?: string): boolean {
    const t = this.tokens[this.i];
    return t !== undefined && (value === undefined || ((t.kind === "op" || t.kind === "id") && t.value === value));
  }

  private expect(value: string): void {
    if (!this.peek(value)) throw new Error(`expected "${value}"${this.tokens[this.i] ? `, got ${describe(this.tokens[this.i] as Token)}` : " at the end"}`);
    this.i++;
  }

  private or(): Node {
    let left = this.and();
    while (this.peek("||")) {
      this.i++;
      left = { type: "or", left, right: this.and() };
    }
    return left;
  }

  private and(): Node {
    let left = this.unary();
    while (this.peek("&&")) {
      this.i++;
      left = { type: "and", left, right: this.unary() };
    }
    return left;
  }

  private unary(): Node {
    if (this.peek("!")) {
      this.i++;
      return { type: "not", operand: this.unary() };
    }
    return this.comparison();
  }

  private comparison(): Node {
    const left = this.postfix();
    const t = this.tokens[this.i];
    if (t && ((t.kind === "op" && ["==", "!=", "<", "<=", ">", ">="].includes(t.value)) || (t.kind === "id" && t.value === "in"))) {
      this.i++;
      return { type: "compare", op: t.value as "==", left, right: this.postfix() };
    }
    return left;
  }

  private postfix(): Node {
    let node = this.primary();
    while (this.peek(".")) {
      this.i++;
      const name = this.tokens[this.i];
      if (name?.kind !== "id" || !["startsWith", "endsWith", "contains"].includes(name.value)) {
        throw new Error(`expected startsWith, endsWith or contains after "."${name ? `, got ${describe(name)}` : ""}`);
      }
      this.i++;
      this.expect("(");
      const argument = this.or();
      this.expect(")");
      node = { type: "call", method: name.value as "contains", target: node, argument };
    }
    return node;
  }

  private primary(): Node {
    const t = this.tokens[this.i];
    if (!t) throw new Error("unexpected end of expression");
    if (t.kind === "num" || t.kind === "str") {
      this.i++;
      return { type: "literal", value: t.value };
    }
    if (t.kind === "op" && t.value === "(") {
      this.i++;
      const node = this.or();
      this.expect(")");
      return node;
    }
    if (t.kind === "op" && t.value === "[") {
      this.i++;
      const items: Node[] = [];
      while (!this.peek("]")) {
        items.push(this.or());
        if (!this.peek("]")) this.expect(",");
      }
      this.i++;
      return { type: "list", items };
    }
    if (t.kind === "id") {
      if (t.value === "true" || t.value === "false") {
        this.i++;
        return { type: "literal", value: t.value === "true" };
      }
      if (t.value === "null") {
        this.i++;
        return { type: "literal", value: null };
      }
      if (t.value === "has") {
        this.i++;
        this.expect("(");
        const attribute = this.attribute();
        this.expect(")");
        return { type: "has", attribute };
      }
      return this.attribute();
    }
    throw new Error(`unexpected ${describe(t)}`);
  }

  private attribute(): Node & { type: "attribute" } {
    const parts: string[] = [];
    const first = this.tokens[this.i];
    if (first?.kind !== "id") throw new Error(`expected an attribute${first ? `, got ${describe(first)}` : ""}`);
    parts.push(first.value);
    this.i++;
    let key: string | undefined;
    for (;;) {
      const next = this.tokens[this.i + 2];
      const isCall = next?.kind === "op" && next.value === "(";
      if (this.peek(".") && this.tokens[this.i + 1]?.kind === "id" && !isCall) {
        parts.push((this.tokens[this.i + 1] as Token).value as string);
        this.i += 2;
        continue;
      }
      if (this.peek("[")) {
        this.i++;
        const k = this.tokens[this.i];
        if (k?.kind !== "str") throw new Error(`expected a quoted name inside [...]`);
        key = k.value;
        this.i++;
        this.expect("]");
      }
      break;
    }
    const name = parts.join(".");
    const kind = ATTRIBUTES[name];
    if (!kind) throw new Error(`unknown attribute "${name}"; supported: ${Object.keys(ATTRIBUTES).join(", ")}`);
    if (kind === "keyed" && key === undefined) throw new Error(`${name} needs a name, as in ${name}['x-example']`);
    if (kind === "plain" && key !== undefined) throw new Error(`${name} takes no [name]`);
    if (key !== undefined && name.endsWith("headers")) {
      const header = key.toLowerCase();
      // Headers.get throws for a name that is not a header name; the pseudo-headers are read from the request instead.
      const readable = name === "request.headers" ? isRequestHeaderName(header) : isRequestHeaderName(header) && !header.startsWith(":");
      if (!readable) throw new Error(`${name}['${key}'] is not a header name${name === "request.headers" ? " (or :authority, :path, :method, :scheme)" : ""}`);
      return { type: "attribute", name, key: header };
    }
    return key !== undefined ? { type: "attribute", name, key } : { type: "attribute", name };
  }
}

function describe(t: Token): string {
  return t.kind === "str" ? `'${t.value}'` : `"${t.value}"`;
}

/** Parses an expression of the supported subset; the error names what was expected. */
export function parseExpression(text: string): ParseResult {
  const tokens = tokenize(text);
  if (typeof tokens === "string") return { ok: false, error: tokens };
  if (tokens.length === 0) return { ok: false, error: "empty expression" };
  try {
    return { ok: true, node: new Parser(tokens).parse() };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

/** Reads an attribute of the request being evaluated (`key` for keyed ones); undefined or null when absent. */
export type AttributeReader = (name: string, key?: string) => Value | undefined;

/** Evaluates a parsed expression. Type mismatches compare unequal, as CEL errors would not match. */
export function evaluate(node: Node, read: AttributeReader): Value {
  switch (node.type) {
    case "literal":
      return node.value;
    case "attribute":
      return read(node.name, node.key) ?? null;
    case "list":
      return node.items.map((n) => evaluate(n, read));
    case "has":
      return (read(node.attribute.name, node.attribute.key) ?? null) !== null;
    case "not":
      return evaluate(node.operand, read) !== true;
    case "and":
      return evaluate(node.left, read) === true && evaluate(node.right, read) === true;
    case "or":
      return evaluate(node.left, read) === true || evaluate(node.right, read) === true;
    case "call": {
      const target = evaluate(node.target, read);
      const arg = evaluate(node.argument, read);
      if (typeof target !== "string" || typeof arg !== "string") return false;
      return node.method === "startsWith" ? target.startsWith(arg) : node.method === "endsWith" ? target.endsWith(arg) : target.includes(arg);
    }
    case "compare": {
      const left = evaluate(node.left, read);
      const right = evaluate(node.right, read);
      switch (node.op) {
        case "==":
          return equal(left, right);
        case "!=":
          return !equal(left, right);
        case "in":
          return Array.isArray(right) && right.some((v) => equal(left, v));
        default: {
          if (!((typeof left === "number" && typeof right === "number") || (typeof left === "string" && typeof right === "string"))) return false;
          return node.op === "<" ? left < right : node.op === "<=" ? left <= right : node.op === ">" ? left > right : left >= right;
        }
      }
    }
  }
}

function equal(a: Value, b: Value): boolean {
  if (Array.isArray(a) || Array.isArray(b)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}

/** A tag value: strings as they are, numbers and booleans in decimal/`true`, null as `unknown` (Istio's missing value). */
export function tagValue(value: Value): string {
  if (value === null) return "unknown";
  if (Array.isArray(value)) return JSON.stringify(value);
  return String(value);
}
