/**
 * How config-store keys become file names in a directory store (the state
 * directory of `isthmus serve`). Keys such as `snapshot:3f9c2a1b0c4d` hold
 * characters that are unsafe or awkward in a file name (`:`, `/`, a leading
 * `.`), so every character outside `[A-Za-z0-9-]` is written as `_` and two
 * hex digits of its UTF-8 bytes. The mapping is injective (no two keys share
 * a file name) and reversible, and a name never contains `/`, `.` or `%`, so
 * it cannot escape the directory or be mistaken for a dotfile.
 *
 * @example
 * keyToFileName("snapshot:3f9c2a1b0c4d") // "snapshot_3a3f9c2a1b0c4d"
 * fileNameToKey("snapshot_3a3f9c2a1b0c4d") // "snapshot:3f9c2a1b0c4d"
 */

const SAFE = /[A-Za-z0-9-]/;

export function keyToFileName(key: string): string {
  if (key.length === 0) throw new Error("a config-store key cannot be empty");
  let out = "";
  for (const ch of key) {
    if (SAFE.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of new TextEncoder().encode(ch)) out += `_${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** The key a file name stands for, or undefined when the name is not one keyToFileName makes. */
export function fileNameToKey(name: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name[i] as string;
    if (ch === "_") {
      const hex = name.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (SAFE.test(ch)) bytes.push(ch.charCodeAt(0));
    else return undefined;
  }
  if (bytes.length === 0) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}
