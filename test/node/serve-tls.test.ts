/**
 * `isthmus serve --credentials DIR` and `--https-port N --tls DIR`: reading
 * certificates as Kubernetes and Istio mount them, the errors for what
 * cannot be used, and the workerd services and sockets they become. The
 * end-to-end test (an origin that requires the client certificate, HTTPS
 * clients) is test/e2e/serve-tls.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrivateKey } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { missingCredentials, readCaFile, readCredentials } from "../../src/cli/serve/credentials.ts";
import { isthmus } from "./support.ts";
import { workerdConfig } from "../../src/cli/serve/workerd-config.ts";
import { generatePki, type Pki } from "../helpers/pki.ts";

let pkiDir: string;
let pki: Pki;
/** Every directory credentialsDir made, removed at the end. */
const made: string[] = [];

beforeAll(() => {
  pkiDir = mkdtempSync(join(tmpdir(), "isthmus-pki-"));
  pki = generatePki(pkiDir);
});

afterAll(() => {
  for (const d of [pkiDir, ...made]) rmSync(d, { recursive: true, force: true });
});

/** A fresh credentials directory with the given subdirectories and files. */
function credentialsDir(layout: Record<string, Record<string, string>>): string {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-credentials-"));
  made.push(dir);
  for (const [name, files] of Object.entries(layout)) {
    mkdirSync(join(dir, name));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, name, file), text);
  }
  return dir;
}

const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  throw new Error("expected an error");
};

describe("readCredentials", () => {
  it("reads a Kubernetes TLS secret (tls.crt, tls.key, ca.crt) and an Istio generic secret (cert, key, cacert)", () => {
    const d = credentialsDir({
      PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": pki.clientKey, "ca.crt": pki.ca },
      LEDGER: { cert: pki.clientCert, key: pki.clientKey, cacert: pki.ca },
      PUBLIC_ORIGIN: { "tls.crt": pki.clientCert, "tls.key": pki.clientKey },
    });
    const creds = readCredentials(d);
    expect(creds.map((c) => c.binding)).toEqual(["LEDGER", "PAYMENTS", "PUBLIC_ORIGIN"]);
    for (const c of creds) {
      expect(c.privateKey).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect(c.certificateChain).toBe(pki.clientCert);
      expect(Date.parse(c.notAfter)).toBeGreaterThan(Date.now());
    }
    expect(creds[0]?.trustedCertificates).toEqual([pki.ca.trim() + "\n"]);
    expect(creds[2]?.trustedCertificates).toBeUndefined();
  });

  it("skips dot entries and files beside the directories, as a mounted Kubernetes secret volume has them", () => {
    const d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": pki.clientKey }, "..2026_11_26_12_00_00.123": {} });
    writeFileSync(join(d, "README"), "not a credential");
    symlinkSync("..2026_11_26_12_00_00.123", join(d, "..data"));
    expect(readCredentials(d).map((c) => c.binding)).toEqual(["PAYMENTS"]);
  });

  it("converts a traditional (SEC1 or PKCS#1) key to the PKCS#8 form workerd takes", () => {
    const sec1 = createPrivateKey(pki.clientKey).export({ type: "sec1", format: "pem" }) as string;
    expect(sec1).toMatch(/BEGIN EC PRIVATE KEY/);
    const [c] = readCredentials(credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": sec1 } }));
    expect(c?.privateKey).toBe(createPrivateKey(pki.clientKey).export({ type: "pkcs8", format: "pem" }));
  });

  it("names the directory, the file and what was expected when a credential cannot be used", () => {
    expect(errorOf(() => readCredentials(join(tmpdir(), "isthmus-no-such-dir")))).toMatch(/--credentials: .*isthmus-no-such-dir: no such directory/);

    let d = credentialsDir({ "payments-cert": { "tls.crt": pki.clientCert, "tls.key": pki.clientKey } });
    expect(errorOf(() => readCredentials(d))).toMatch(/payments-cert: expected a directory named as a binding \(letters, digits and _/);

    d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS: expected a certificate and its key \(tls.crt and tls.key, or cert and key\); found tls.crt/);

    d = credentialsDir({ PAYMENTS: { "tls.crt": "not a certificate", "tls.key": pki.clientKey } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS\/tls.crt: expected a PEM certificate/);

    d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS\/tls.key: expected an unencrypted PEM private key/);

    d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": pki.strangerKey } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS\/tls.key: the key does not belong to the certificate in .*PAYMENTS\/tls.crt/);

    d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": pki.clientKey, "ca.crt": "junk" } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS\/ca.crt: expected PEM CA certificates \(no certificate in it\)/);
  });

  it("names what cannot be read instead of failing with a stack: a dangling link, a directory where a file should be", () => {
    let d = credentialsDir({});
    symlinkSync(join(d, "gone"), join(d, "PAYMENTS"));
    expect(errorOf(() => readCredentials(d))).toMatch(/--credentials: .*PAYMENTS: cannot be read \(ENOENT/);
    d = credentialsDir({ PAYMENTS: { "tls.key": pki.clientKey } });
    mkdirSync(join(d, "PAYMENTS", "tls.crt"));
    expect(errorOf(() => readCredentials(d))).toMatch(/--credentials: .*PAYMENTS\/tls.crt: cannot be read \(EISDIR/);
  });

  it("refuses an encrypted key, which workerd could not read", () => {
    const encrypted = createPrivateKey(pki.clientKey).export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "secret" }) as string;
    const d = credentialsDir({ PAYMENTS: { "tls.crt": pki.clientCert, "tls.key": encrypted } });
    expect(errorOf(() => readCredentials(d))).toMatch(/PAYMENTS\/tls.key: expected an unencrypted PEM private key/);
  });

});

describe("isthmus serve --credentials", () => {
  it("refuses, before applying anything, a directory that cannot be read or a name another binding has", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      const absent = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--credentials", join(state, "nothing-here")]);
      expect(absent.code).toBe(2);
      expect(absent.stderr).toMatch(/--credentials: .*nothing-here: no such directory/);
      const d = credentialsDir({ CONFIG_STORE: { "tls.crt": pki.clientCert, "tls.key": pki.clientKey } });
      const clash = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--credentials", d]);
      expect(clash.code).toBe(2);
      expect(clash.stderr).toContain("--credentials: CONFIG_STORE is already the name of the configuration store; rename the directory");
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("isthmus serve --https-port --tls", () => {
  it("refuses one without the other, the HTTP port, or a directory without a certificate, before applying anything", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    const serve = (...args: string[]) => isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--port", "8787", ...args]);
    try {
      const tls = credentialsDir({ tls: { "tls.crt": pki.serverCert, "tls.key": pki.serverKey } });
      const cases: [string[], string][] = [
        [["--https-port", "8443"], "--https-port and --tls go together"],
        [["--tls", join(tls, "tls")], "--https-port and --tls go together"],
        [["--https-port", "8787", "--tls", join(tls, "tls")], "--https-port: expected a port number other than --port, got 8787"],
        [["--https-port", "8443", "--tls", tls], `--tls: ${tls}: expected a certificate and its key (tls.crt and tls.key, or cert and key); found tls`],
        // The certificate file itself, where its directory is expected (was: ENOTDIR and a stack trace).
        [["--https-port", "8443", "--tls", join(tls, "tls", "tls.crt")], `--tls: ${join(tls, "tls", "tls.crt")}: expected a directory holding tls.crt and tls.key (or cert and key), got a file`],
      ];
      for (const [args, message] of cases) {
        const result = await serve(...args);
        expect(result.code).toBe(2);
        expect(result.stderr).toContain(message);
      }
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("missingCredentials", () => {
  it("lists each binding the clusters use that no credential provides, with its clusters", () => {
    const clusters = {
      "outbound|443||payments.shop.internal": { mtlsBinding: "PAYMENTS" },
      "outbound|443|v2|payments.shop.internal": { mtlsBinding: "PAYMENTS" },
      "outbound|443||ledger.shop.internal": { mtlsBinding: "LEDGER" },
      "outbound|80||plain.shop.internal": {},
    };
    expect(missingCredentials({ clusters }, ["LEDGER"])).toEqual([{ binding: "PAYMENTS", clusters: ["outbound|443|v2|payments.shop.internal", "outbound|443||payments.shop.internal"] }]);
    expect(missingCredentials({ clusters }, ["LEDGER", "PAYMENTS"])).toEqual([]);
  });
});

describe("workerdConfig with credentials", () => {
  const base = { moduleFile: "worker.js", compatibilityDate: "2026-11-01", compatibilityFlags: [], listen: "127.0.0.1:8787", configDir: "/s/config", durableObjectDir: "/s/do", durableObjects: [] };

  it("binds each credential to a network service that presents it, verifying the origin with its CA or the public CAs", () => {
    const text = workerdConfig({
      ...base,
      credentials: [
        { binding: "PAYMENTS", privateKey: "KEY\n", certificateChain: "CERT\n", trustedCertificates: ["CA\n"] },
        { binding: "PUBLIC_ORIGIN", privateKey: "KEY2\n", certificateChain: "CERT2\n" },
      ],
    });
    expect(text).toContain(`(name = "PAYMENTS", service = "mtls-PAYMENTS")`);
    expect(text).toContain(`(name = "mtls-PAYMENTS", network = (allow = ["public", "private", "local"], tlsOptions = (
      keypair = (privateKey = "KEY\\n", certificateChain = "CERT\\n"),
      trustedCertificates = ["CA\\n"])))`);
    expect(text).toContain(`(name = "mtls-PUBLIC_ORIGIN", network = (allow = ["public", "private", "local"], tlsOptions = (
      keypair = (privateKey = "KEY2\\n", certificateChain = "CERT2\\n"),
      trustBrowserCas = true)))`);
  });

  it("adds --trusted-ca's certificates to the public CAs the global outbound trusts", () => {
    expect(workerdConfig({ ...base, trustedCas: ["CA1\n", "CA2\n"] })).toContain(
      `(name = "internet", network = (allow = ["public", "private", "local"], tlsOptions = (trustBrowserCas = true, trustedCertificates = ["CA1\\n", "CA2\\n"]))),`,
    );
    expect(workerdConfig(base)).toContain(`tlsOptions = (trustBrowserCas = true))),`);
  });

  it("reads a CA bundle, and names a file that holds no certificate", () => {
    const d = credentialsDir({ ca: { "bundle.pem": `${pki.ca}\n${pki.ca}`, "junk.pem": "not a certificate" } });
    expect(readCaFile(join(d, "ca", "bundle.pem"), "--trusted-ca")).toHaveLength(2);
    expect(errorOf(() => readCaFile(join(d, "ca", "junk.pem"), "--trusted-ca"))).toMatch(/--trusted-ca: .*junk.pem: expected PEM CA certificates \(no certificate in it\)/);
    expect(errorOf(() => readCaFile(join(d, "ca", "absent.pem"), "--trusted-ca"))).toMatch(/--trusted-ca: .*absent.pem: cannot be read \(ENOENT/);
  });

  it("adds nothing without credentials or HTTPS", () => {
    expect(workerdConfig(base)).not.toContain("mtls-");
    expect(workerdConfig(base)).not.toContain("https");
  });

  it("adds an HTTPS socket with the certificate, stripping the same edge headers as the HTTP one", () => {
    const text = workerdConfig({ ...base, https: { listen: "0.0.0.0:8443", privateKey: "KEY\n", certificateChain: "CERT\n" } });
    expect(text).toContain(`(name = "https", address = "0.0.0.0:8443", service = "isthmus",
     https = (options = (injectRequestHeaders = [(name = "cf-connecting-ip"),`);
    expect(text).toContain(`tlsOptions = (keypair = (privateKey = "KEY\\n", certificateChain = "CERT\\n")))),`);
  });
});

