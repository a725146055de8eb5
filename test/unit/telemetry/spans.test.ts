/**
 * The span status of a traced request: the SERVER span is an error for 5xx
 * (and a client gone before the response), its CLIENT spans — upstream
 * attempts and mirrored copies — for 4xx as well, as the OpenTelemetry HTTP
 * semantic conventions set for each kind.
 */
import { describe, expect, it } from "vitest";
import { newRecord } from "../../../src/gateway/context.ts";
import { completeRequest } from "../../../src/telemetry/completed.ts";
import { SPAN_KIND, STATUS_CODE, type Span } from "../../../src/telemetry/otlp/model.ts";
import type { AttemptTiming } from "../../../src/telemetry/record.ts";
import { buildSpans } from "../../../src/telemetry/spans.ts";

const TRACE = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", sampled: true };

/** The spans of a request answered `status`, after these attempts and mirrored copies. */
function spansOf(status: number, attempts: Partial<AttemptTiming>[], mirrors: { status?: number; outcome?: "failed" }[] = []): Span[] {
  const record = newRecord(1_000);
  record.cluster = "outbound|80||app.shop.internal";
  record.upstreamAttempts = attempts.map((a, i) => ({ attempt: i + 1, endpoint: "10.0.0.1:80", url: "http://10.0.0.1/", start: 1_000, end: 1_010, outcome: "response", spanId: `${i + 1}`.padStart(16, "0"), ...a }));
  record.mirrors = mirrors.map((m) => (m.outcome ? { cluster: "outbound|80||shadow.internal", outcome: m.outcome } : { cluster: "outbound|80||shadow.internal", outcome: "sent", status: m.status ?? 200 }));
  record.mirrorSpans = mirrors.map((_, i) => `${i + 1}`.padStart(16, "a"));
  const completed = completeRequest({ request: new Request("http://app.example.com/"), record, response: new Response(null, { status }), end: 1_020, responseBodyBytes: 0, disconnected: false });
  return buildSpans({ completed, trace: TRACE, customTags: [], environment: () => undefined, random: () => 0.5 });
}

const statusOf = (spans: Span[], kind: number) => spans.filter((s) => s.kind === kind).map((s) => s.status);

describe("span status", () => {
  it("leaves a 4xx SERVER span unset, and sets its CLIENT attempt spans to error (semconv: SHOULD for CLIENT)", () => {
    const spans = spansOf(404, [{ status: 404 }]);
    expect(statusOf(spans, SPAN_KIND.SERVER)).toEqual([{ code: STATUS_CODE.UNSET }]);
    expect(statusOf(spans, SPAN_KIND.CLIENT)).toEqual([{ code: STATUS_CODE.ERROR, message: "HTTP 404" }]);
  });

  it("sets an attempt span to error for 5xx and a failure, and leaves 2xx and 3xx unset", () => {
    const spans = spansOf(200, [{ status: 503 }, { outcome: "connect-failure" }, { status: 302 }, { status: 200 }]);
    expect(statusOf(spans, SPAN_KIND.CLIENT)).toEqual([
      { code: STATUS_CODE.ERROR, message: "HTTP 503" },
      { code: STATUS_CODE.ERROR, message: "connect-failure" },
      { code: STATUS_CODE.UNSET },
      { code: STATUS_CODE.UNSET },
    ]);
  });

  it("sets a mirrored copy's span to error when its answer is 4xx or 5xx, as for an attempt", () => {
    const spans = spansOf(200, [{ status: 200 }], [{ status: 503 }, { status: 404 }, { status: 200 }, { outcome: "failed" }]);
    const mirrors = spans.filter((s) => s.name.startsWith("mirror "));
    expect(mirrors.map((s) => s.status)).toEqual([
      { code: STATUS_CODE.ERROR, message: "HTTP 503" },
      { code: STATUS_CODE.ERROR, message: "HTTP 404" },
      { code: STATUS_CODE.UNSET },
      { code: STATUS_CODE.ERROR, message: "failed" },
    ]);
  });
});
