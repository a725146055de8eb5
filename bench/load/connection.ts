/**
 * One keep-alive HTTP/1.1 connection for the load generator: writes
 * prebuilt request bytes and parses just enough of each response (status,
 * Content-Length or chunked body) to know when it is complete. No
 * pipelining: one request in flight per connection.
 */
import { connect, type Socket } from "node:net";

export interface Completion {
  status: number;
  /** The connection failed or closed before the response was complete. */
  failed: boolean;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");

export class Connection {
  private readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private pending?: (c: Completion) => void;
  private closed = false;
  readonly ready: Promise<void>;

  constructor(port: number, host = "127.0.0.1") {
    this.socket = connect({ port, host, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("error", reject);
    });
    this.socket.on("data", (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    const fail = () => {
      this.closed = true;
      const done = this.pending;
      this.pending = undefined;
      done?.({ status: 0, failed: true });
    };
    this.socket.on("error", fail);
    this.socket.on("close", fail);
  }

  get usable(): boolean {
    return !this.closed;
  }

  /** Sends one request; `done` runs once when its response is complete or the connection fails. */
  send(request: Buffer, done: (c: Completion) => void): void {
    if (this.closed) {
      done({ status: 0, failed: true });
      return;
    }
    this.pending = done;
    this.socket.write(request);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private parse(): void {
    const headerEnd = this.buffer.indexOf(CRLFCRLF);
    if (headerEnd < 0) return;
    const head = this.buffer.toString("latin1", 0, headerEnd);
    const status = Number(head.slice(9, 12));
    const bodyStart = headerEnd + 4;
    let end: number | undefined;
    const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (lengthMatch) {
      const need = bodyStart + Number(lengthMatch[1]);
      if (this.buffer.length >= need) end = need;
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      end = chunkedEnd(this.buffer, bodyStart);
    } else {
      end = bodyStart; // no body (e.g. 204/304)
    }
    if (end === undefined) return;
    this.buffer = this.buffer.subarray(end);
    const done = this.pending;
    this.pending = undefined;
    done?.({ status, failed: false });
  }
}

/** Where a chunked body starting at `start` ends, or undefined if it has not fully arrived. */
function chunkedEnd(buf: Buffer, start: number): number | undefined {
  let pos = start;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", pos, "latin1");
    if (lineEnd < 0) return undefined;
    const size = parseInt(buf.toString("latin1", pos, lineEnd), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) {
      const trailerEnd = buf.indexOf("\r\n\r\n", lineEnd, "latin1");
      return trailerEnd < 0 ? undefined : trailerEnd + 4;
    }
    pos = lineEnd + 2 + size + 2;
    if (pos > buf.length) return undefined;
  }
}

/** The bytes of a GET request with the given Host (and extra headers). */
export function getRequest(host: string, path: string, headers: Record<string, string> = {}): Buffer {
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: isthmus-bench\r\nAccept: application/json\r\n${extra}\r\n`, "latin1");
}
