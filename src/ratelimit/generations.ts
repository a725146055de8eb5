/**
 * A bounded memo that keeps what is in use, for values an isolate derives
 * from client-chosen keys (a bucket's name, an object's id): entries go into
 * a recent generation; once it holds `generation` of them it becomes the
 * older one (the previous older is dropped) and a new recent one starts; an
 * entry found in the older generation is put back into the recent one. A
 * key asked for at least once per `generation` new keys is never derived
 * again, however many new keys (a flood of principals or addresses) come
 * between its uses; at most 2 × `generation` entries are held.
 *
 * Entries are grouped (by rule, say), so a caller looks a key up without
 * joining the group and the key into one text per request.
 *
 * @example
 * const ids = new Generations<DurableObjectId>(5_000);
 * const id = ids.get("", name) ?? ids.set("", name, env.RATE_LIMITER.idFromName(name));
 */
export class Generations<V> {
  private recent = new Map<string, Map<string, V>>();
  private older = new Map<string, Map<string, V>>();
  private recentHeld = 0;
  private olderHeld = 0;
  private readonly generation: number;

  constructor(generation: number) {
    this.generation = generation;
  }

  get(group: string, key: string): V | undefined {
    const known = this.recent.get(group)?.get(key);
    if (known !== undefined) return known;
    const kept = this.older.get(group)?.get(key);
    return kept === undefined ? undefined : this.set(group, key, kept);
  }

  /** Remembers `value` (in the recent generation) and returns it. */
  set(group: string, key: string, value: V): V {
    if (this.recentHeld >= this.generation) {
      this.older = this.recent;
      this.olderHeld = this.recentHeld;
      this.recent = new Map();
      this.recentHeld = 0;
    }
    let entries = this.recent.get(group);
    if (!entries) this.recent.set(group, (entries = new Map()));
    if (!entries.has(key)) this.recentHeld++;
    entries.set(key, value);
    return value;
  }

  /** Entries held, in both generations (a key moved back from the older one counts in each until it is dropped). */
  get size(): number {
    return this.recentHeld + this.olderHeld;
  }
}
