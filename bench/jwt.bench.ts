/**
 * `npm run bench:jwt`: request authentication cost per algorithm (see
 * bench/jwt-measure.ts); not part of `npm test`.
 */
import { measureJwt, type JwtCosts } from "./jwt-measure.ts";

const rows: JwtCosts[] = [];
for (const alg of ["RS256", "ES256", "EdDSA"]) rows.push(await measureJwt(alg));
console.log(`Node ${process.version}, ${rows[0]?.tokens} distinct tokens (key cached), ${rows[0]?.hits} repeats of one token (token cached)\n`);
console.log("| alg | cold (JWKS parsed, key imported, verified): µs | key cached: µs per request | verified-token cache hit: µs per request |");
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.alg} | ${r.coldUs.toFixed(1)} | ${r.keyCachedUs.toFixed(1)} | ${r.tokenCachedUs.toFixed(2)} |`);
