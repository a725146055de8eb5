/**
 * Delegate VirtualServices, as Istio runs them (mergeVirtualServicesIfNeeded
 * in pilot/pkg/model/virtualservice.go): a VirtualService without hosts is a
 * delegate; a root VirtualService's rule `delegate: {name, namespace}` is
 * replaced, in place, by the delegate's rules merged with it
 * (delegate-merge.ts). One level only, and only http rules.
 *
 * Where Istio quietly skips a rule (the delegate is missing, is not exported
 * to the root's namespace, or a delegate rule falls outside the root rule's
 * matches), Isthmus skips it too and says so in a warning. Problems found
 * while compiling a merged rule are reported where the offending field is
 * written: on the delegate, or on the root rule for a field it lent.
 */
import { formatPath } from "../problems.ts";
import type { HTTPRoute } from "../schema/networking.ts";
import type { AnyResource, Resource } from "../validate.ts";
import type { Diagnostics, DiagnosticsSink, FieldPath } from "./diagnostics.ts";
import { mergeRoute, type HTTPMatch, type MergedRoute } from "./delegate-merge.ts";
import { resolveGatewayName } from "./gateway-names.ts";
import { expandShortName } from "./hosts.ts";

type VirtualService = Resource<"VirtualService">;

/** One rule to compile: the VirtualService it counts as, the rule, its index there, and where its problems go. */
export interface RuleInput {
  vs: VirtualService;
  route: HTTPRoute;
  index: number;
  diag: DiagnosticsSink;
  /** Fields a root rule lent this delegated rule (delegate-merge.ts). */
  lent?: ReadonlySet<keyof HTTPRoute>;
}

/** Annotations a rule reads from its VirtualService; a delegate's own value wins over its root's. */
const RULE_ANNOTATIONS = ["isthmus.dev/retry-non-idempotent", "isthmus.dev/sticky-cohort"];

/** True for a VirtualService that can only be delegated to (no hosts). */
export function isDelegate(vs: VirtualService): boolean {
  return !vs.spec.hosts?.length;
}

export class Delegates {
  private readonly byKey = new Map<string, VirtualService>();
  private readonly used = new Set<VirtualService>();
  private readonly diag: Diagnostics;

  /** Indexes the delegates among `virtualServices` and reports the ones Istio's validation refuses. */
  constructor(virtualServices: readonly VirtualService[], diag: Diagnostics) {
    this.diag = diag;
    for (const vs of virtualServices) {
      if (!isDelegate(vs)) continue;
      this.byKey.set(`${vs.namespace}/${vs.name}`, vs);
      // Istio's ValidateVirtualService for a VirtualService without hosts.
      if (vs.spec.gateways?.length) diag.error(vs, ["spec", "gateways"], "a delegate VirtualService (one without hosts) must have no gateways: the root VirtualService that delegates to it decides where it applies");
      if (vs.spec.tls?.length) diag.error(vs, ["spec", "tls"], "a delegate VirtualService (one without hosts) must have no tls routes");
      if (vs.spec.tcp?.length) diag.error(vs, ["spec", "tcp"], "a delegate VirtualService (one without hosts) must have no tcp routes");
      vs.spec.http?.forEach((route, i) => {
        if (route.delegate) diag.error(vs, ["spec", "http", i, "delegate"], "a delegate VirtualService cannot delegate again (Istio allows one level of delegation)");
      });
    }
  }

  /** Warns about delegates no VirtualService served at the edge delegates to. Call after every root has been expanded. */
  reportUnused(): void {
    for (const vs of this.byKey.values()) {
      if (this.used.has(vs) || !vs.spec.http?.length) continue;
      this.diag.warn(vs, ["spec"], "no VirtualService served at the edge delegates to this one (a VirtualService without hosts is a delegate), so it serves nothing");
    }
  }

  /**
   * The rules of `vs` in order, each delegating rule replaced by the
   * delegate's rules merged with it.
   */
  rulesOf(vs: VirtualService, diag: DiagnosticsSink): RuleInput[] {
    const out: RuleInput[] = [];
    (vs.spec.http ?? []).forEach((route, index) => {
      if (!route.delegate) {
        out.push({ vs, route, index, diag });
        return;
      }
      const delegate = this.lookup(vs, route, index, diag);
      if (!delegate) return;
      this.used.add(delegate);
      const root = rooted(route, vs.namespace);
      const context = contextOf(vs, delegate);
      // One problem in a lent field shows up in every merged rule: reported once per delegating rule.
      const seen = new Set<string>();
      delegate.spec.http?.forEach((own, j) => {
        if (own.delegate) return; // refused in the constructor
        const merged = mergeRoute(root, withResolvedGateways(own, delegate.namespace));
        if (!merged) {
          diag.warn(
            delegate,
            ["spec", "http", j, "match"],
            `never applies through ${vs.id} ${formatPath(["spec", "http", index])}: a match block falls inside none of that rule's match blocks, so the rule is dropped, as Istio drops it`,
          );
          return;
        }
        out.push({ vs: context, route: merged.route, index: j, lent: merged.inherited, diag: new DelegatedDiagnostics(diag, { vs, index, route }, { vs: delegate, index: j, route: own }, merged, seen) });
      });
    });
    return out;
  }

  private lookup(vs: VirtualService, route: HTTPRoute, index: number, diag: DiagnosticsSink): VirtualService | undefined {
    const at: FieldPath = ["spec", "http", index];
    const ref = route.delegate ?? {};
    // Istio's validation of a root rule (validateHTTPRouteConflict): the delegate's rules are its action, so
    // route and redirect are refused; a directResponse passes validation and the merge ignores it.
    const actions = (["route", "redirect"] as const).filter((k) => route[k] !== undefined);
    if (actions.length > 0) {
      diag.error(vs, [...at, actions[0] as string], `expected only one of route, redirect, directResponse or delegate, got delegate and ${actions.join(" and ")}`);
      return undefined;
    }
    if (route.directResponse !== undefined) diag.warn(vs, [...at, "directResponse"], "ignored next to delegate: the delegate's rules answer (Istio's merge drops it too)");
    if (!ref.name) {
      diag.error(vs, [...at, "delegate", "name"], "expected the name of the VirtualService to delegate to");
      return undefined;
    }
    const namespace = ref.namespace || vs.namespace;
    const delegate = this.byKey.get(`${namespace}/${ref.name}`);
    if (!delegate) {
      diag.warn(vs, [...at, "delegate"], `no delegate VirtualService ${namespace}/${ref.name} (one without hosts) is defined; this rule is skipped, as Istio skips it`);
      return undefined;
    }
    const exportTo = delegate.spec.exportTo ?? ["*"];
    const visible = exportTo.some((e) => e === "*" || e === vs.namespace || (e === "." && delegate.namespace === vs.namespace));
    if (!visible) {
      diag.warn(vs, [...at, "delegate"], `${delegate.id} is not exported to namespace ${vs.namespace} (exportTo: [${exportTo.join(", ")}]); this rule is skipped, as Istio skips it`);
      return undefined;
    }
    return delegate;
  }
}

/**
 * The root rule as its delegates inherit it: gateway names resolved and
 * mirror hosts expanded in the root's namespace, since the merged rules are
 * compiled in the delegate's.
 */
function rooted(route: HTTPRoute, namespace: string): HTTPRoute {
  const out = withResolvedGateways(route, namespace);
  if (out.mirror) out.mirror = { ...out.mirror, host: expandShortName(out.mirror.host, namespace) };
  if (out.mirrors) out.mirrors = out.mirrors.map((m) => ({ ...m, destination: { ...m.destination, host: expandShortName(m.destination.host, namespace) } }));
  return out;
}

function withResolvedGateways(route: HTTPRoute, namespace: string): HTTPRoute {
  if (!route.match?.some((m) => m.gateways?.length)) return { ...route };
  return { ...route, match: route.match.map((m): HTTPMatch => (m.gateways ? { ...m, gateways: m.gateways.map((g) => resolveGatewayName(g, namespace)) } : m)) };
}

/** The delegate as its merged rules see it: its own namespace and identity, rule annotations falling back to the root's. */
function contextOf(root: VirtualService, delegate: VirtualService): VirtualService {
  const annotations = { ...delegate.metadata.annotations };
  for (const key of RULE_ANNOTATIONS) {
    const inherited = root.metadata.annotations?.[key];
    if (annotations[key] === undefined && inherited !== undefined) annotations[key] = inherited;
  }
  return { ...delegate, metadata: { ...delegate.metadata, annotations } };
}

interface RuleRef {
  vs: VirtualService;
  index: number;
  route: HTTPRoute;
}

/**
 * Reports a merged rule's problems against the field as written: the
 * delegate's, or the root rule's for what it lent, with a note naming the
 * other side. The same problem from several merged blocks or rules is
 * reported once (`seen` is shared by the rules of one delegating rule).
 */
class DelegatedDiagnostics implements DiagnosticsSink {
  private readonly seen: Set<string>;
  private readonly target: DiagnosticsSink;
  private readonly root: RuleRef;
  private readonly delegate: RuleRef;
  private readonly merged: MergedRoute;

  constructor(target: DiagnosticsSink, root: RuleRef, delegate: RuleRef, merged: MergedRoute, seen: Set<string>) {
    this.seen = seen;
    this.target = target;
    this.root = root;
    this.delegate = delegate;
    this.merged = merged;
  }

  error(_resource: AnyResource, path: FieldPath, message: string): void {
    const at = this.locate(path);
    if (this.first("error", at, message)) this.target.error(at.resource, at.path, `${message} ${at.note}`);
  }

  warn(_resource: AnyResource, path: FieldPath, message: string): void {
    const at = this.locate(path);
    if (this.first("warning", at, message)) this.target.warn(at.resource, at.path, `${message} ${at.note}`);
  }

  private first(severity: string, at: { resource: AnyResource; path: FieldPath }, message: string): boolean {
    const key = `${severity}\n${at.resource.id}\n${formatPath(at.path)}\n${message}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }

  private locate(path: FieldPath): { resource: AnyResource; path: FieldPath; note: string } {
    const onDelegate = (sub: FieldPath) => ({
      resource: this.delegate.vs,
      path: ["spec", "http", this.delegate.index, ...sub],
      note: `(delegated to by ${this.root.vs.id} ${formatPath(["spec", "http", this.root.index])})`,
    });
    const onRoot = (sub: FieldPath) => ({
      resource: this.root.vs,
      path: ["spec", "http", this.root.index, ...sub],
      note: `(lent to the rules of ${this.delegate.vs.id}, here its ${formatPath(["spec", "http", this.delegate.index])})`,
    });
    if (path[0] === "metadata") {
      const key = path[2];
      const own = typeof key === "string" && this.delegate.vs.metadata.annotations?.[key] !== undefined;
      const vs = own ? this.delegate.vs : this.root.vs;
      return { resource: vs, path, note: own ? onDelegate([]).note : onRoot([]).note };
    }
    const sub = path.slice(3);
    const [key, block, field, name] = sub;
    if (key === "match" && typeof block === "number") {
      const origin = this.merged.matchOrigins[block];
      const own = origin?.delegate !== undefined ? this.delegate.route.match?.[origin.delegate] : undefined;
      const fromDelegate = own !== undefined && (field === undefined || ownsField(own, field, name));
      if (fromDelegate) return onDelegate(["match", origin?.delegate as number, ...sub.slice(2)]);
      return onRoot(["match", origin?.root ?? 0, ...sub.slice(2)]);
    }
    if (typeof key === "string" && this.merged.inherited.has(key as keyof HTTPRoute)) return onRoot(sub);
    return onDelegate(sub);
  }
}

/** True when the delegate's own match block wrote this field (or this key of a map field). */
function ownsField(block: HTTPMatch, field: string | number, name: string | number | undefined): boolean {
  const value = (block as Record<string, unknown>)[String(field)];
  if (value === undefined) return false;
  if (name === undefined || typeof value !== "object" || value === null || Array.isArray(value)) return true;
  return (value as Record<string, unknown>)[String(name)] !== undefined;
}
