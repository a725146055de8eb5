/**
 * Consistent hashing tables, pure: Envoy's ring hash (weighted points on a
 * 32-bit ring) and Maglev (a prime-sized lookup table filled from
 * per-endpoint permutations). Both keep a key on the same endpoint while
 * the endpoint set is unchanged, and move only about 1/N of the keys when
 * one of N endpoints leaves. Tables are built once per endpoint set and
 * cached by the caller; lookups are O(log n) (ring) or O(1) (Maglev).
 */
import { fnv1a } from "../routing/cohort.ts";

export interface HashMember {
  /** Stable identity of the endpoint, e.g. `10.0.0.1:8080`. */
  key: string;
  weight: number;
}

export interface HashTable {
  /**
   * The member for `hash`. With `skip`, walks on from that point to the
   * first member not skipped (Envoy's host-selection retry on a hash
   * table), falling back to the first choice when every member is skipped.
   */
  pick(hash: number, skip?: (member: number) => boolean): number;
}

/** A 32-bit hash of a request's hash key (header value, cookie, IP, query parameter). */
export function hashOf(value: string): number {
  return fnv1a(value);
}

/**
 * A ring hash: each member gets points in proportion to its weight, and
 * the ring has at least `minimumSize` points.
 *
 * Envoy rescales every member's points whenever the member set changes,
 * which moves keys between the members that stay. Here the points per
 * unit of weight come from `referenceWeight` — the total weight of the
 * cluster's whole endpoint list, which ejections and failed health checks
 * do not change — so when a member leaves only the keys it held move.
 *
 * @example
 * const ring = buildRing([{ key: "a:80", weight: 1 }, { key: "b:80", weight: 1 }], 1024);
 * ring.pick(hashOf("user-42")) // 0 or 1, the same every time
 */
export function buildRing(members: readonly HashMember[], minimumSize: number, referenceWeight = members.reduce((n, m) => n + m.weight, 0)): HashTable {
  const perWeight = Math.max(1, Math.ceil(minimumSize / Math.max(1, referenceWeight)));
  const points: { hash: number; member: number }[] = [];
  members.forEach((m, i) => {
    const count = Math.max(1, Math.round(m.weight * perWeight));
    for (let n = 0; n < count; n++) points.push({ hash: fnv1a(`${m.key}_${n}`), member: i });
  });
  points.sort((a, b) => a.hash - b.hash || a.member - b.member);
  const hashes = Uint32Array.from(points, (p) => p.hash);
  const owners = Uint32Array.from(points, (p) => p.member);
  return {
    pick(hash, skip) {
      let lo = 0;
      let hi = hashes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((hashes[mid] as number) < hash >>> 0) lo = mid + 1;
        else hi = mid;
      }
      const start = lo === hashes.length ? 0 : lo;
      const first = owners[start] as number;
      if (!skip) return first;
      for (let i = 0; i < owners.length; i++) {
        const m = owners[(start + i) % owners.length] as number;
        if (!skip(m)) return m;
      }
      return first;
    },
  };
}

/**
 * Maglev (Eisenbud et al., NSDI 2016) with Envoy's weighting: each member
 * walks its own permutation of the table (offset, skip) and claims free
 * slots, heavier members more often. `tableSize` must be prime.
 *
 * @example
 * const table = buildMaglev(members, 65_537);
 * table.pick(hashOf("user-42"))
 */
export function buildMaglev(members: readonly HashMember[], tableSize: number): HashTable {
  const table = new Int32Array(tableSize).fill(-1);
  const maxWeight = Math.max(...members.map((m) => m.weight));
  const entries = members.map((m) => ({
    offset: fnv1a(m.key) % tableSize,
    skip: (fnv1a(`${m.key}#skip`) % (tableSize - 1)) + 1,
    weight: m.weight / maxWeight,
    target: 0,
    next: 0,
  }));
  let filled = 0;
  for (let iteration = 0; filled < tableSize; iteration++) {
    for (let i = 0; i < entries.length && filled < tableSize; i++) {
      const e = entries[i] as (typeof entries)[number];
      if (iteration * e.weight < e.target) continue;
      e.target += 1;
      let slot = (e.offset + e.skip * e.next) % tableSize;
      while ((table[slot] as number) >= 0) {
        e.next++;
        slot = (e.offset + e.skip * e.next) % tableSize;
      }
      table[slot] = i;
      e.next++;
      filled++;
    }
  }
  return {
    pick(hash, skip) {
      const start = (hash >>> 0) % tableSize;
      const first = table[start] as number;
      if (!skip) return first;
      for (let i = 0; i < tableSize; i++) {
        const m = table[(start + i) % tableSize] as number;
        if (!skip(m)) return m;
      }
      return first;
    },
  };
}
