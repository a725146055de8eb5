/**
 * Watching a `-f` path for the supervisor (`isthmus dev`, `isthmus serve`).
 * `fs.watch` binds to the directory a path names when watching starts, so a
 * path that comes to name another directory would go unwatched: a git-sync
 * style symlink swap (`ln -sfn wt2 current.tmp && mv -T current.tmp current`)
 * or a directory renamed over (`mv live live.old && mv live.new live`). Here
 * a watch on the parent directory sees the entry replaced, and a cheap check
 * of the real path and inode every couple of seconds catches the rest (a
 * link further up the path); either re-binds the watchers to the directory
 * the path names now and reports a change.
 */
import { realpathSync, statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

/** How often the path's real directory is checked, besides the watch on its parent. */
export const RECHECK_MS = 2_000;

export interface PathWatch {
  close(): void;
}

export interface WatchOptions {
  recheckMs?: number;
}

/**
 * Calls `onChange` when the configuration at `path` changes (`onChange` is
 * expected to debounce: one change can call it more than once).
 * A directory: a recursive watcher, plus a plain one, since Node's recursive
 * watcher on Linux misses a symlink renamed into place, which is how
 * Kubernetes updates a mounted ConfigMap (the `..data` link). A file: a
 * watcher on its directory, for that name (and Kubernetes' `..data` links),
 * since editors and `sed -i` save by renaming a new file over the old one,
 * and a watcher on the file itself stays on the old inode, deaf from then on.
 * When the directory watched (the path, or a file's directory) is replaced,
 * the watchers move to the new one. Throws when `path` cannot be read.
 */
export function watchConfigPath(path: string, onChange: () => void, options: WatchOptions = {}): PathWatch {
  const file = !statSync(path).isDirectory();
  const name = basename(path);
  /** The directory the watchers are on, and the parent directory where it is an entry. */
  const home = file ? dirname(path) : path;
  const parent = dirname(resolve(home));
  const entry = basename(resolve(home));

  /** On `home` and on `parent`: the second stays while `home` is missing, to see it back. */
  let watchers: FSWatcher[] = [];
  let parentWatcher: FSWatcher | undefined;
  /** What the watchers are on: the identity of `home` ("" while it is missing); undefined once one failed. */
  let bound: string | undefined;
  let boundParent: string | undefined;
  /** A file's identity: a link moved to another file outside `home` is seen by the check alone. */
  let target = file ? identity(path) : "";
  let closed = false;

  const unbind = () => {
    for (const w of watchers) w.close();
    watchers = [];
  };
  // A watcher that fails (its directory gone, a watch limit) is replaced at the next check, not at once: no loop.
  const onError = () => {
    if (closed) return;
    unbind();
    bound = undefined;
  };
  const onEvent = () => {
    check();
    onChange();
  };
  /** Watches `home` as it is now; throws at the start, reports a failure later on (the watch is then gone). */
  const bind = (starting: boolean) => {
    unbind();
    try {
      if (file) {
        watchers.push(watch(home, (_event, changed) => (changed === null || changed === name || changed.startsWith("..") ? onEvent() : undefined)));
      } else {
        watchers.push(watch(home, { recursive: true }, onEvent));
        watchers.push(watch(home, onEvent));
      }
      for (const w of watchers) w.on("error", onError);
    } catch (error) {
      unbind();
      if (starting) throw error;
      console.error(`isthmus: cannot watch ${path} (${error instanceof Error ? error.message : String(error)}); changes to it will not be re-applied`);
    }
  };
  /**
   * Watches `parent` for `home`'s entry replaced: a link swapped, a directory renamed over. Without
   * this watch (`/` has no parent, a parent that cannot be read), the periodic check sees it.
   */
  const bindParent = () => {
    parentWatcher?.close();
    parentWatcher = undefined;
    if (parent === resolve(home)) return;
    try {
      parentWatcher = watch(parent, (_event, changed) => (changed === null || changed === entry ? check() : undefined));
      parentWatcher.on("error", () => {
        parentWatcher?.close();
        parentWatcher = undefined;
        boundParent = undefined;
      });
    } catch {
      // The periodic check stands in.
    }
  };
  function check(): void {
    if (closed) return;
    const parentNow = identity(parent);
    if (parentNow !== boundParent) {
      boundParent = parentNow;
      bindParent();
    }
    if (file) {
      const was = target;
      target = identity(path);
      if (target !== was) onChange();
    }
    const now = identity(home);
    if (now === bound) return;
    const before = bound;
    bound = now;
    if (now === "") {
      // Between the two renames of a replacement, or removed: wait for it to be back (the reload that
      // follows, if any, reports it missing).
      unbind();
      return;
    }
    bind(false);
    if (before !== undefined && before !== "") {
      const real = realPath(home);
      console.log(`isthmus: ${home} is another directory now${real !== resolve(home) ? ` (${real})` : ""}; watching it`);
    }
    onChange();
  }

  bound = identity(home);
  bind(true);
  boundParent = identity(parent);
  bindParent();
  const timer = setInterval(check, options.recheckMs ?? RECHECK_MS);
  // The check never keeps the process alive: the gateway's exit ends the supervisor.
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
      unbind();
      parentWatcher?.close();
    },
  };
}

/** The real path and inode of what `path` names, or "" when it names nothing now. */
function identity(path: string): string {
  try {
    const real = realpathSync(path);
    const stat = statSync(real, { bigint: true });
    return `${real}\0${stat.dev}:${stat.ino}`;
  } catch {
    return "";
  }
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
