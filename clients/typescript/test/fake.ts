/** A fake WebSocket and a manual clock: the state machine driven step by step. */

import type { Clock, WebSocketLike } from "../src/index.js";

export class FakeClock implements Clock {
  #now = 1_700_000_000_000;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Moves time on by `ms`, running every timer that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const t of this.#timers) if (t[1].at <= end && (!next || t[1].at < next[1].at)) next = t;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }

  /** Delays of the pending timers, from now. */
  pending(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b);
  }
}

/** Lets pending promise callbacks (token(), …) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class FakeSocket implements WebSocketLike {
  static instances: FakeSocket[] = [];

  static last(): FakeSocket {
    const s = FakeSocket.instances[FakeSocket.instances.length - 1];
    if (!s) throw new Error("no socket was opened");
    return s;
  }

  readonly url: string;
  readyState = 0;
  /** Frames the client sent, parsed. */
  readonly sent: Record<string, unknown>[] = [];
  readonly #acked = new WeakSet<object>();
  closedWith: { code: number | undefined; reason: string | undefined } | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(url: string) {
    this.url = url;
    FakeSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // ---- the server side ----

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The frames sent of one type. */
  frames(type: string): Record<string, unknown>[] {
    return this.sent.filter((f) => f["type"] === type);
  }

  /** Answers every subscribe sent so far that has not been answered. */
  ackSubscribes(recovery?: (frame: Record<string, unknown>) => Record<string, unknown> | undefined): void {
    for (const f of this.frames("subscribe")) {
      if (this.#acked.has(f)) continue;
      this.#acked.add(f);
      const reply: Record<string, unknown> = { type: "subscribed", id: f["id"], channels: f["channels"] ?? [] };
      const r = recovery?.(f);
      if (r) reply["recovery"] = r;
      this.receive(reply);
    }
  }
}

export function event(channel: string, offset: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "event",
    channel,
    event: "TRADE_EXECUTED",
    timestamp: 1_700_000_000_000 + offset,
    offset,
    data: { price: String(offset) },
    ...extra,
  };
}

/** An unsigned JWT with `exp` (seconds): enough for the client, which only reads it. */
export function jwt(expSeconds: number, sub = "alice"): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: expSeconds })}.sig`;
}
