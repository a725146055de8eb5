/**
 * A parsed JSON Web Key Set and the keys it yields for a token. Keys are
 * selected the way jwt_verify_lib selects them: a key is a candidate when
 * its `kid` (if both have a non-empty one: an empty `kid` on either side
 * matches every key) equals the token's, its `alg` (if set)
 * equals the token's, and its type fits the algorithm. `kid` is only ever
 * an exact-match lookup into keys already in memory: it never names a
 * file, a URL or a query. Each (key, algorithm) pair is imported into a
 * CryptoKey once and reused.
 */
import { importJWK } from "jose";
import { decodeBase64url } from "./base64url.ts";

export type Jwk = Record<string, unknown>;

/** Members only a private (or symmetric) key has; stripped from asymmetric keys before import. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth"];
const KTY = new Set(["RSA", "EC", "OKP", "oct"]);

export class KeySet {
  readonly keys: readonly Jwk[];
  /** The `kid`s present, for the unknown-kid refetch decision. */
  readonly kids: ReadonlySet<string>;
  /** The JWKS text this set was parsed from, to tell a changed JWKS from a refreshed one. */
  readonly text: string;
  private readonly imported = new Map<string, CryptoKey | null>();

  constructor(keys: Jwk[], text: string) {
    this.keys = keys;
    this.text = text;
    this.kids = new Set(keys.map((k) => k.kid).filter((k): k is string => typeof k === "string"));
  }

  /** The indexes of the keys that may have signed a token with this `alg` and `kid`. */
  candidates(alg: string, kid: string | undefined): number[] {
    const out: number[] = [];
    this.keys.forEach((key, i) => {
      if (kid && typeof key.kid === "string" && key.kid !== "" && key.kid !== kid) return;
      if (typeof key.alg === "string" && key.alg !== alg) return;
      if (key.use !== undefined && key.use !== "sig") return;
      if (fits(key, alg)) out.push(i);
    });
    return out;
  }

  /** The CryptoKey for key `index` used with `alg`, imported on first use; undefined when it cannot be imported. */
  async cryptoKey(index: number, alg: string): Promise<CryptoKey | undefined> {
    const id = `${index}|${alg}`;
    const cached = this.imported.get(id);
    if (cached !== undefined) return cached ?? undefined;
    const jwk = this.keys[index];
    let key: CryptoKey | null = null;
    if (jwk) {
      try {
        key = await importKey(jwk, alg);
      } catch {
        key = null;
      }
    }
    this.imported.set(id, key);
    return key ?? undefined;
  }
}

/**
 * Parses JWKS JSON text into a KeySet, keeping keys of a supported type
 * (public members only). Undefined when the text is not a JWKS or has no
 * usable key.
 */
export function parseJwks(text: string): KeySet | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const keys = typeof parsed === "object" && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys)) return undefined;
  return keySetOf(keys, text);
}

/** A KeySet from already-parsed keys (inline `jwks`). */
export function keySetOf(keys: readonly unknown[], text: string): KeySet | undefined {
  const usable: Jwk[] = [];
  for (const k of keys) {
    if (typeof k !== "object" || k === null) continue;
    const key = { ...(k as Jwk) };
    if (typeof key.kty !== "string" || !KTY.has(key.kty)) continue;
    if (key.kty !== "oct") for (const m of PRIVATE_MEMBERS) delete key[m];
    usable.push(key);
  }
  return usable.length > 0 ? new KeySet(usable, text) : undefined;
}

function fits(key: Jwk, alg: string): boolean {
  if (alg.startsWith("RS") || alg.startsWith("PS")) return key.kty === "RSA";
  if (alg.startsWith("HS")) return key.kty === "oct";
  if (alg === "EdDSA") return key.kty === "OKP" && key.crv === "Ed25519";
  const curve = { ES256: "P-256", ES384: "P-384", ES512: "P-521" }[alg];
  return curve !== undefined && key.kty === "EC" && key.crv === curve;
}

async function importKey(jwk: Jwk, alg: string): Promise<CryptoKey | null> {
  if (jwk.kty === "oct") {
    // An HMAC secret: never empty, and only ever used with an HS* algorithm (fits() guarantees it).
    const secret = typeof jwk.k === "string" ? decodeBase64url(jwk.k) : undefined;
    if (!secret || secret.length === 0) return null;
    const hash = `SHA-${alg.slice(2)}`;
    return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash }, false, ["verify"]);
  }
  const { alg: _alg, key_ops: _ops, ext: _ext, ...rest } = jwk;
  const key = await importJWK(rest, alg, { extractable: false });
  return key instanceof Uint8Array ? null : key;
}
