/**
 * The CEL subset of access-log filters and metric tag values.
 */
import { describe, expect, it } from "vitest";
import { newRecord } from "../../../src/gateway/context.ts";
import { attributesOf, completeRequest } from "../../../src/telemetry/completed.ts";
import { evaluate, parseExpression, tagValue, type Value } from "../../../src/telemetry/expression.ts";

const attrs: Record<string, Value> = {
  "response.code": 503,
  "request.method": "GET",
  "request.url_path": "/api/items",
  "request.host": "shop.example.com",
  "response.code_details": "via_upstream",
  "connection.mtls": false,
};
const headers: Record<string, string> = { "x-debug": "1", "user-agent": "curl/8" };
const read = (name: string, key?: string): Value | undefined => (name === "request.headers" ? headers[key as string] : attrs[name]);

function run(text: string): Value {
  const parsed = parseExpression(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return evaluate(parsed.node, read);
}

describe("expressions", () => {
  it("compares numbers and strings", () => {
    expect(run("response.code >= 500")).toBe(true);
    expect(run("response.code < 400")).toBe(false);
    expect(run("request.method == 'GET'")).toBe(true);
    expect(run('request.method != "POST"')).toBe(true);
    expect(run("response.code == 503u")).toBe(true);
  });

  it("combines with &&, ||, ! and parentheses, left to right with && binding tighter", () => {
    expect(run("response.code >= 500 && request.method == 'POST' || request.headers['x-debug'] == '1'")).toBe(true);
    expect(run("response.code >= 500 && (request.method == 'POST' || request.headers['x-debug'] == '0')")).toBe(false);
    expect(run("!(response.code >= 500)")).toBe(false);
    expect(run("!connection.mtls")).toBe(true);
  });

  it("reads headers case-insensitively by name; an absent one is null", () => {
    expect(run("request.headers['X-Debug'] == '1'")).toBe(true);
    expect(run("request.headers['x-missing'] == null")).toBe(true);
    expect(run("has(request.headers['x-debug'])")).toBe(true);
    expect(run("has(request.headers['x-missing'])")).toBe(false);
  });

  it("has string methods and list membership", () => {
    expect(run("request.url_path.startsWith('/api/')")).toBe(true);
    expect(run("request.host.endsWith('.example.com')")).toBe(true);
    expect(run("request.headers['user-agent'].contains('curl')")).toBe(true);
    expect(run("response.code in [502, 503, 504]")).toBe(true);
    expect(run("request.method in ['POST', 'PUT']")).toBe(false);
  });

  it("treats comparisons across types as false rather than failing", () => {
    expect(run("response.code > 'a'")).toBe(false);
    expect(run("request.headers['x-missing'].startsWith('a')")).toBe(false);
  });

  it("explains what is wrong with an expression outside the subset", () => {
    const bad = (text: string) => {
      const r = parseExpression(text);
      return r.ok ? "" : r.error;
    };
    expect(bad("response.cod >= 500")).toMatch(/unknown attribute "response.cod"/);
    expect(bad("request.headers == 'x'")).toMatch(/needs a name/);
    expect(bad("response.code >=")).toMatch(/unexpected end/);
    expect(bad("response.code >= 500)")).toMatch(/unexpected/);
    expect(bad("request.path.matches('a')")).toMatch(/startsWith, endsWith or contains/);
    expect(bad("'unterminated")).toMatch(/unterminated string/);
    expect(bad("")).toMatch(/empty/);
    // Headers.get would throw for these at every request: refused when the config is built.
    expect(bad("request.headers['x bad'] == '1'")).toMatch(/request.headers\['x bad'\] is not a header name \(or :authority, :path, :method, :scheme\)/);
    expect(bad("response.headers[':status'] == '200'")).toMatch(/response.headers\[':status'\] is not a header name$/);
    expect(bad("request.headers[':authority'] == 'a'")).toBe("");
  });

  it("reads request.headers[':authority'], [':path'], [':method'] and [':scheme'] from the request, as Envoy's pseudo-headers", () => {
    const completed = completeRequest({
      request: new Request("https://shop.example.com/cart?id=7", { method: "POST" }),
      record: newRecord(0),
      response: new Response("ok"),
      end: 1,
      responseBodyBytes: 2,
      disconnected: false,
    });
    const read = attributesOf(completed);
    expect([":authority", ":path", ":method", ":scheme"].map((k) => read("request.headers", k))).toEqual(["shop.example.com", "/cart?id=7", "POST", "https"]);
  });

  it("gives tag values as Istio labels them (missing → unknown)", () => {
    expect(tagValue("a")).toBe("a");
    expect(tagValue(200)).toBe("200");
    expect(tagValue(true)).toBe("true");
    expect(tagValue(null)).toBe("unknown");
  });
});
