/**
 * Prints a token from the bookinfo demo's issuer, for the README tour:
 *   npm run demo:token            # sub: jason
 *   npm run demo:token -- alice   # sub: alice
 * DEMO ONLY: the issuer's private key is public (demo-issuer.json).
 */
import { readFileSync } from "node:fs";
import { importJWK, SignJWT, type JWK } from "jose";

const issuer = JSON.parse(readFileSync(new URL("./demo-issuer.json", import.meta.url), "utf8")) as { issuer: string; jwk: JWK };
const key = await importJWK(issuer.jwk, "RS256");
const sub = process.argv[2] ?? "jason";
const token = await new SignJWT({ name: sub })
  .setProtectedHeader({ alg: "RS256", kid: issuer.jwk.kid ?? "bookinfo-demo" })
  .setIssuer(issuer.issuer)
  .setSubject(sub)
  .setAudience("bookinfo")
  .setIssuedAt()
  .setExpirationTime("1h")
  .sign(key);
console.log(token);
