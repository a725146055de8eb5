/**
 * The Snapshot as it is stored (KV, a `serve --state` directory): the
 * compiled Snapshot with each virtual host's routes and rules kept as one
 * JSON string of their own, so that an isolate parses at load only what
 * every request needs (settings, host table, clusters, policies) and a
 * virtual host's routes the first time a request reaches it.
 *
 * `JSON.parse` was nearly all of a cold isolate's load: 10,000 routes over
 * 500 hosts are 3.9 MB of JSON, ~40–70 ms to parse here, while scanning
 * the same routes as strings is ~5× faster (docs/BENCHMARKS.md). The
 * content and the version are those of the compiled Snapshot; only the
 * layout differs, and `unpackSnapshot` gives the compiled form back exactly.
 *
 * @example
 * await store.put(KEYS.snapshot(s.version), JSON.stringify(packSnapshot(s)));
 * const same = unpackSnapshot(JSON.parse(await store.get(KEYS.snapshot(s.version))));
 */
import { SNAPSHOT_FORMAT, type RouteDef, type RuleDef, type Snapshot, type VirtualHostDef } from "./snapshot.ts";

/** The layout of a stored snapshot whose virtual hosts are packed. */
export const PACKED_FORMAT = 2;

/** The snapshot layouts this build reads. */
export const READABLE_FORMATS: readonly number[] = [SNAPSHOT_FORMAT, PACKED_FORMAT];

/** A virtual host whose routes and rules wait, as JSON text, for a request to need them. */
export interface PackedVirtualHost {
  name: string;
  httpsRedirect: boolean;
  /** The index in `Snapshot.rules` of each rule in the packed `rules`, in order. */
  ruleIds: number[];
  /** JSON of a `PackedHostBody`. */
  packed: string;
}

/** What a packed virtual host's text holds. */
export interface PackedHostBody {
  /** The routes in order; each `rule` indexes this body's own `rules`. */
  routes: RouteDef[];
  rules: RuleDef[];
}

/** A stored snapshot in the packed layout (what the CLI writes). */
export interface PackedSnapshot extends Omit<Snapshot, "format" | "virtualHosts" | "rules"> {
  format: typeof PACKED_FORMAT;
  virtualHosts: PackedVirtualHost[];
}

/** A stored snapshot in either layout this build reads. */
export type StoredSnapshot = Snapshot | PackedSnapshot;

/** What either layout holds besides the virtual hosts' routes and rules. */
export type SnapshotHead = Omit<Snapshot, "format" | "virtualHosts" | "rules"> & { format: number };

/**
 * A virtual host's routes with the rules they use: each `routes[].rule`
 * indexes `rules`, and `ruleIds[i]` is the index of `rules[i]` in the
 * compiled Snapshot's `rules` (the same index when `ruleIds` is absent).
 */
export interface HostRoutes {
  routes: RouteDef[];
  rules: readonly RuleDef[];
  ruleIds?: readonly number[];
}

/** A virtual host as `joinSnapshot` takes it. */
export interface HostParts {
  name: string;
  httpsRedirect: boolean;
  routes(): HostRoutes;
}

/** The compiled Snapshot in the packed layout. */
export function packSnapshot(snapshot: Snapshot): PackedSnapshot {
  const { format: _format, virtualHosts, rules, ...rest } = snapshot;
  return { format: PACKED_FORMAT, ...rest, virtualHosts: virtualHosts.map((vh) => packVirtualHost(vh, rules)) };
}

function packVirtualHost(vh: VirtualHostDef, rules: RuleDef[]): PackedVirtualHost {
  const ruleIds: number[] = [];
  const local = new Map<number, number>();
  const routes = vh.routes.map((route): RouteDef => {
    let i = local.get(route.rule);
    if (i === undefined) {
      i = ruleIds.push(route.rule) - 1;
      local.set(route.rule, i);
    }
    return { ...route, rule: i };
  });
  const body: PackedHostBody = { routes, rules: ruleIds.map((id) => rules[id] as RuleDef) };
  return { name: vh.name, httpsRedirect: vh.httpsRedirect, ruleIds, packed: JSON.stringify(body) };
}

/**
 * Reads a packed virtual host's routes and rules (its rule indexes stay
 * local to the body). The rules share one copy of each string they repeat.
 */
export function readPackedHost(vh: PackedVirtualHost): PackedHostBody {
  const body = JSON.parse(vh.packed) as PackedHostBody;
  shareRuleStrings(body.rules);
  return body;
}

/**
 * Makes rules share one copy of the strings they repeat: the routes of a
 * VirtualService name the same source, and mostly the same destination
 * hosts and clusters, and `JSON.parse` gives every occurrence a copy of
 * its own (~150 bytes a rule, 1.4 MB over 10,000 routes). Strings of up
 * to 10 characters are shared by V8 already.
 */
function shareRuleStrings(rules: RuleDef[]): void {
  const seen = new Map<string, string>();
  const one = (s: string): string => {
    const found = seen.get(s);
    if (found !== undefined) return found;
    seen.set(s, s);
    return s;
  };
  for (const rule of rules) {
    rule.source = one(rule.source);
    if (rule.action.type === "route") {
      for (const d of rule.action.destinations) {
        d.host = one(d.host);
        d.cluster = one(d.cluster);
      }
    }
    for (const m of rule.mirrors ?? []) {
      m.host = one(m.host);
      m.cluster = one(m.cluster);
    }
  }
}

/** The compiled Snapshot a stored one holds, in either layout. */
export function unpackSnapshot(stored: StoredSnapshot): Snapshot {
  if (stored.format !== PACKED_FORMAT) return stored;
  const { virtualHosts, ...head } = stored;
  return joinSnapshot(
    head,
    virtualHosts.map((vh) => ({ name: vh.name, httpsRedirect: vh.httpsRedirect, routes: () => ({ ...readPackedHost(vh), ruleIds: vh.ruleIds }) })),
  );
}

/** The compiled Snapshot from its head and its virtual hosts (see `HostRoutes`). */
export function joinSnapshot(head: SnapshotHead, hosts: readonly HostParts[]): Snapshot {
  const { format: _format, ...rest } = head;
  const rules: RuleDef[] = [];
  const virtualHosts = hosts.map((vh): VirtualHostDef => {
    const parts = vh.routes();
    const id = (i: number): number => (parts.ruleIds ? (parts.ruleIds[i] as number) : i);
    const routes = parts.routes.map((route): RouteDef => {
      rules[id(route.rule)] = parts.rules[route.rule] as RuleDef;
      return { ...route, rule: id(route.rule) };
    });
    return { name: vh.name, httpsRedirect: vh.httpsRedirect, routes };
  });
  return { format: SNAPSHOT_FORMAT, ...rest, virtualHosts, rules };
}
