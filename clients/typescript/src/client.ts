/**
 * `OdinClient`: one WebSocket to the gateway, kept alive, authenticated and subscribed, so that
 * the application sees every event of its channels exactly once and in channel order across
 * reconnects, gateway restarts and moves to another gateway instance.
 *
 * How (docs/protocol.md):
 * - the last `offset` delivered per channel is kept; every (re)connect re-subscribes the whole
 *   subscription set with `"recover": {channel: lastOffset}`, so the gateway replays what was
 *   missed and joins live delivery without a gap or duplicate; events at or below a channel's
 *   last offset are dropped anyway (belt and braces);
 * - a `gap` frame unsubscribes the channel and subscribes it again recovering from the gap;
 * - `"recovered": false` is reported as a `stale` event: the application reloads that state;
 * - a socket that showed nothing for twice the heartbeat interval is replaced (the client sends a
 *   `ping` after one interval of silence, so a quiet but healthy socket always answers);
 * - the token is fetched again before its `exp` and on `token_expired`, and sent in an `auth`
 *   frame; every new socket gets a fresh token on its URL (`?token=`, which browsers can send).
 */

import { expandSubscription, isWildcard, wildcardOf } from "./channels.js";
import { Emitter } from "./emitter.js";
import type { BundleName } from "./generated.js";
import { jwtExpiresAt } from "./jwt.js";
import type {
  ClientFrame,
  ErrorCode,
  ErrorFrame,
  EventFrame,
  GapFrame,
  RecoveryReason,
  ServerFrame,
  StaleReason,
  SubscribedFrame,
  SubscribeFrame,
  SubscribeOptions,
} from "./protocol.js";
import {
  frameText,
  OPEN,
  resolveWebSocket,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./socket.js";

/** Timers and time, injectable so tests can drive the state machine deterministically. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

/**
 * Where to connect: one URL; a list of gateway instances (the first is used first, and every
 * reconnect moves on to the next one, round robin); or a function called before every
 * connection attempt (e.g. to pick an instance from service discovery).
 */
export type UrlSource = string | readonly string[] | (() => string | Promise<string>);

/** How the token reaches the gateway. */
export type TokenTransport = "query" | "frame";

export interface ClientOptions {
  /** Gateway URL(s), e.g. `wss://stream.example.com/ws`: see {@link UrlSource}. */
  url: UrlSource;
  /**
   * Returns a JWT; called before every connection, before the token's `exp` and when the
   * gateway reports `token_expired`. Without it, or when it returns `""` or `undefined`, the
   * connection is anonymous (public events).
   */
  token?: () => Promise<string | undefined> | string | undefined;
  /**
   * `query` (default): the token rides on the URL (`?token=`), checked at the upgrade, so a
   * bad token fails the connection. `frame`: it is sent in an `auth` frame right after the
   * socket opens (before the subscriptions), so it never appears in URLs or access logs and
   * a refused token leaves the connection anonymous.
   */
  tokenTransport?: TokenTransport;
  /** The gateway's heartbeat interval; silence for twice this replaces the socket. Default 15 000. */
  heartbeatMs?: number;
  /** Reconnect delays: random in [d/2, d], d = min(maxMs, initialMs × 2ⁿ). Default 500 → 15 000. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Refresh the token this long before its `exp` (at most half its remaining life). Default 30 000. */
  refreshBeforeExpiryMs?: number;
  /** Client frames per second, burst included (the gateway allows 20). Default 15. */
  maxMessagesPerSecond?: number;
  /**
   * After a reconnect, channels that had no event yet are recovered from the start of the
   * retained log (`-1`): nothing produced while disconnected is missed, at the price of also
   * receiving events retained from before the subscription. Default true.
   */
  recoverUnseen?: boolean;
  /** WebSocket implementation; default: the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** For tests. */
  clock?: Clock;
  /** For tests: the jitter source, `Math.random` by default. */
  random?: () => number;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnect attempt number (0 = first retry), on `reconnecting`. */
  attempt?: number;
  /** Delay before the next attempt, on `reconnecting`. */
  delayMs?: number;
  /** Close code and reason of the socket that went away, on `reconnecting`. */
  code?: number;
  reason?: string;
}

export interface StaleChannel {
  channel: string;
  reason: StaleReason;
}

export interface RecoveredChannel {
  channel: string;
  replayed: number;
}

/** An error frame from the gateway, or a client-side failure (`transport`, `token`, `liveness`). */
export interface ClientErrorInfo {
  code: ErrorCode | "transport" | "token" | "liveness" | (string & {});
  message: string;
  /** The id of the request that failed, when the gateway named one. */
  id?: unknown;
}

export type ClientEvents = {
  state: (change: StateChange) => void;
  /** Every frame from the gateway, after the client handled it (for consoles and logs). */
  frame: (frame: ServerFrame) => void;
  /** Every event, once, in channel order. */
  event: (event: EventFrame) => void;
  /** A channel may have missed events: reload its state (e.g. over the REST API). */
  stale: (stale: StaleChannel) => void;
  /** A channel was recovered after a reconnect or a gap. */
  recovered: (recovered: RecoveredChannel) => void;
  /** A `gap` frame arrived (recovery starts on its own). */
  gap: (gap: GapFrame) => void;
  authenticated: (auth: { userId: string; expiresAt: number }) => void;
  error: (error: ClientErrorInfo) => void;
};

export interface SubscriptionSpec extends SubscribeOptions {
  bundle?: BundleName;
  tokens?: string[];
  channels?: string[];
}

export interface Subscription {
  /** The channels this subscription holds (bundle channels first), as the gateway expands them. */
  readonly channels: readonly string[];
  /** Resolves with the gateway's first `subscribed` reply; rejects if it refused the request. */
  readonly ready: Promise<SubscribedFrame>;
  /** Stops this subscription; channels other subscriptions still hold stay subscribed. */
  unsubscribe(): void;
}

/** Counters, e.g. for an integration test's closing figures. */
export interface ClientStats {
  frames: number;
  events: number;
  duplicates: number;
  /** Live events dropped while a gap was being recovered (they come again in the replay). */
  drained: number;
  reconnects: number;
  gaps: number;
  livenessTimeouts: number;
  tokenRefreshes: number;
}

interface Entry {
  spec: SubscriptionSpec;
  channels: string[];
  set: Set<string>;
  listener: ((event: EventFrame) => void) | undefined;
  /** The gateway has confirmed it once: from now on it is recovered, not subscribed afresh. */
  acked: boolean;
  settle: { resolve: (f: SubscribedFrame) => void; reject: (e: Error) => void } | undefined;
}

interface Conn {
  ws: WebSocketLike;
  createdAt: number;
  openedAt: number | undefined;
  lastFrameAt: number;
  pinged: boolean;
  refreshing: boolean;
  liveness: unknown;
  refresh: unknown;
  drain: unknown;
  queue: string[];
  tokens: number;
  refilledAt: number;
}

type Pending =
  | { kind: "subscribe"; entry: Entry; frame: SubscribeFrame; wildcards: string[] }
  | { kind: "ping"; sentAt: number; resolve: (rttMs: number) => void; reject: (e: Error) => void }
  | { kind: "gap-unsubscribe"; channel: string; from: number }
  | { kind: "gap-subscribe"; channel: string }
  | { kind: "other" };

/** A connection open this long resets the backoff. */
const STABLE_AFTER_MS = 5_000;
/** Delay before a subscribe refused with `rate_limited` is sent again. */
const RATE_LIMITED_RETRY_MS = 1_000;

function noop(): void {}

export class OdinClient extends Emitter<ClientEvents> {
  readonly #urls: UrlSource;
  #urlIndex = 0;
  #currentUrl: string | undefined;
  readonly #token: ClientOptions["token"];
  readonly #tokenTransport: TokenTransport;
  readonly #heartbeatMs: number;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #refreshBeforeMs: number;
  readonly #rate: number;
  readonly #recoverUnseen: boolean;
  readonly #ctor: WebSocketConstructor | undefined;
  readonly #clock: Clock;
  readonly #random: () => number;

  #state: ConnectionState = "closed";
  /** Incremented by every attempt and by `close()`: a stale async step sees it changed. */
  #generation = 0;
  #conn: Conn | undefined;
  #attempt = 0;
  #reconnectTimer: unknown;
  #seq = 0;
  readonly #entries = new Set<Entry>();
  /** Last offset delivered to the application, per concrete channel. */
  readonly #cursors = new Map<string, number>();
  /** Channels whose gap is being recovered: live events are dropped while `draining`. */
  readonly #gaps = new Map<string, "draining" | "replaying">();
  readonly #pending = new Map<string, Pending>();
  readonly #stats: ClientStats = {
    frames: 0,
    events: 0,
    duplicates: 0,
    drained: 0,
    reconnects: 0,
    gaps: 0,
    livenessTimeouts: 0,
    tokenRefreshes: 0,
  };

  constructor(options: ClientOptions) {
    super();
    if (Array.isArray(options.url) && options.url.length === 0) throw new TypeError("url: an empty list");
    this.#urls = options.url;
    this.#token = options.token;
    this.#tokenTransport = options.tokenTransport ?? "query";
    this.#heartbeatMs = options.heartbeatMs ?? 15_000;
    this.#initialMs = options.backoff?.initialMs ?? 500;
    this.#maxMs = options.backoff?.maxMs ?? 15_000;
    this.#refreshBeforeMs = options.refreshBeforeExpiryMs ?? 30_000;
    this.#rate = Math.max(1, options.maxMessagesPerSecond ?? 15);
    this.#recoverUnseen = options.recoverUnseen ?? true;
    this.#ctor = options.WebSocket;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get stats(): Readonly<ClientStats> {
    return { ...this.#stats };
  }

  /** The URL of the current (or last) socket. */
  get url(): string | undefined {
    return this.#currentUrl;
  }

  /** The last offset delivered per channel. */
  get offsets(): ReadonlyMap<string, number> {
    return new Map(this.#cursors);
  }

  /** Starts connecting (and keeps reconnecting until `close()`). */
  connect(): this {
    if (this.#state !== "closed") return this;
    this.#attempt = 0;
    void this.#open("connecting");
    return this;
  }

  /** Closes the socket and stops reconnecting; `connect()` again recovers where it left. */
  close(): void {
    if (this.#state === "closed") return;
    this.#generation++;
    this.#clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const conn = this.#conn;
    if (conn) this.#teardown(conn, 1000, "client closed");
    this.#setState({ state: "closed" });
  }

  /**
   * Subscribes to a bundle over tokens, explicit channels (wildcards `*.category` included), or
   * both; `listener` gets the events of this subscription's channels. Throws a `TypeError` for a
   * malformed request. The subscription is kept, and recovered, across reconnects.
   */
  subscribe(spec: SubscriptionSpec, listener?: (event: EventFrame) => void): Subscription {
    const channels = expandSubscription(spec);
    let settle: Entry["settle"];
    const ready = new Promise<SubscribedFrame>((resolve, reject) => {
      settle = { resolve, reject };
    });
    ready.catch(noop); // an application that never awaits `ready` gets no unhandled rejection
    const entry: Entry = {
      spec: { ...spec },
      channels,
      set: new Set(channels),
      listener,
      acked: false,
      settle,
    };
    this.#entries.add(entry);
    const conn = this.#openConn();
    if (conn) this.#sendSubscribe(conn, entry, undefined, []);
    return {
      channels,
      ready,
      unsubscribe: () => this.#unsubscribe(entry),
    };
  }

  // ---- connection lifecycle -------------------------------------------------------------

  async #open(state: "connecting" | "reconnecting"): Promise<void> {
    const generation = ++this.#generation;
    this.#setState({ state });
    let token: string | undefined;
    let Ctor: WebSocketConstructor;
    let target: string;
    try {
      target = await this.#resolveUrl();
    } catch (e) {
      if (generation !== this.#generation) return;
      this.emit("error", { code: "transport", message: `url() failed: ${String(e)}` });
      this.#scheduleReconnect(undefined);
      return;
    }
    try {
      token = (await this.#fetchToken()) || undefined;
    } catch (e) {
      if (generation !== this.#generation) return;
      this.emit("error", { code: "token", message: `token() failed: ${String(e)}` });
      this.#scheduleReconnect(undefined);
      return;
    }
    try {
      Ctor = this.#ctor ?? (await resolveWebSocket());
    } catch (e) {
      if (generation !== this.#generation) return;
      this.emit("error", { code: "transport", message: String(e) });
      this.#scheduleReconnect(undefined);
      return;
    }
    if (generation !== this.#generation) return;
    this.#currentUrl = target;
    let url = target;
    let ws: WebSocketLike;
    try {
      if (token !== undefined && this.#tokenTransport === "query") {
        const u = new URL(target);
        u.searchParams.set("token", token);
        url = u.toString();
      }
      ws = new Ctor(url);
    } catch (e) {
      this.emit("error", { code: "transport", message: `cannot open ${target}: ${String(e)}` });
      this.#scheduleReconnect(undefined);
      return;
    }
    const now = this.#clock.now();
    const conn: Conn = {
      ws,
      createdAt: now,
      openedAt: undefined,
      lastFrameAt: now,
      pinged: false,
      refreshing: false,
      liveness: undefined,
      refresh: undefined,
      drain: undefined,
      queue: [],
      tokens: this.#rate,
      refilledAt: now,
    };
    this.#conn = conn;
    const expiresAt = token === undefined ? undefined : jwtExpiresAt(token);
    const frameToken = this.#tokenTransport === "frame" ? token : undefined;
    ws.onopen = () => {
      if (this.#conn === conn) this.#onOpen(conn, expiresAt, frameToken);
    };
    ws.onmessage = (ev) => {
      if (this.#conn === conn) this.#onMessage(conn, ev.data);
    };
    ws.onclose = (ev) => {
      if (this.#conn === conn) this.#drop(conn, ev.code, ev.reason, undefined);
    };
    ws.onerror = () => {
      if (this.#conn === conn) this.emit("error", { code: "transport", message: `socket error on ${target}` });
    };
    this.#armLiveness(conn);
  }

  /** The URL of the next attempt. */
  async #resolveUrl(): Promise<string> {
    const u = this.#urls;
    if (typeof u === "string") return u;
    if (typeof u === "function") return await u();
    return u[this.#urlIndex % u.length] as string;
  }

  async #fetchToken(): Promise<string | undefined> {
    return this.#token ? await this.#token() : undefined;
  }

  #onOpen(conn: Conn, expiresAt: number | undefined, frameToken: string | undefined): void {
    const now = this.#clock.now();
    conn.openedAt = now;
    conn.lastFrameAt = now;
    this.#setState({ state: "open" });
    if (expiresAt !== undefined) this.#scheduleRefresh(conn, expiresAt);
    // First in the queue: the gateway handles frames in order, so the subscriptions (and
    // their replays) below are decided with this identity.
    if (frameToken !== undefined) this.#send(conn, { type: "auth", id: this.#id("auth"), token: frameToken }, true);
    this.#resubscribeAll(conn);
    this.#flush(conn);
  }

  /** The socket went away (closed, dead, or told to reconnect): replace it. */
  #drop(conn: Conn, code: number | undefined, reason: string | undefined, delayMs: number | undefined): void {
    this.#teardown(conn, 4000, reason ?? "replaced");
    if (this.#state === "closed") return;
    const now = this.#clock.now();
    if (conn.openedAt !== undefined && now - conn.openedAt >= STABLE_AFTER_MS) this.#attempt = 0;
    this.#stats.reconnects++;
    this.#scheduleReconnect(delayMs, code, reason);
  }

  #scheduleReconnect(delayMs: number | undefined, code?: number, reason?: string): void {
    if (this.#state === "closed") return;
    const attempt = this.#attempt++;
    // A list of instances: the next attempt goes to the next one.
    if (Array.isArray(this.#urls)) this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
    const ceiling = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(attempt, 30));
    const delay = delayMs ?? Math.round(ceiling * (1 - 0.5 * this.#random()));
    const change: Omit<StateChange, "previous"> = { state: "reconnecting", attempt, delayMs: delay };
    if (code !== undefined) change.code = code;
    if (reason !== undefined) change.reason = reason;
    this.#setState(change, true);
    this.#clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = this.#clock.setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#open("reconnecting");
    }, delay);
  }

  /** Forgets `conn`: timers, handlers, per-connection requests; closes its socket. */
  #teardown(conn: Conn, code: number, reason: string): void {
    if (this.#conn === conn) {
      this.#conn = undefined;
      for (const p of this.#pending.values()) {
        if (p.kind === "ping") p.reject(new Error(`connection closed before the pong (${reason})`));
      }
      this.#pending.clear();
      this.#gaps.clear();
    }
    this.#clock.clearTimeout(conn.liveness);
    this.#clock.clearTimeout(conn.refresh);
    this.#clock.clearTimeout(conn.drain);
    const ws = conn.ws;
    // Handlers become no-ops rather than null: `ws` throws an "error" nobody listens to.
    ws.onopen = noop;
    ws.onmessage = noop;
    ws.onclose = noop;
    ws.onerror = noop;
    try {
      ws.close(code, reason.slice(0, 120));
    } catch {
      // Already closing or closed.
    }
  }

  #setState(change: Omit<StateChange, "previous">, always = false): void {
    const previous = this.#state;
    if (previous === change.state && !always) return;
    this.#state = change.state;
    this.emit("state", { ...change, previous });
  }

  #openConn(): Conn | undefined {
    const conn = this.#conn;
    return conn && conn.openedAt !== undefined ? conn : undefined;
  }

  // ---- liveness and token refresh -------------------------------------------------------

  /** Pings after one heartbeat interval of silence, replaces the socket after two. */
  #armLiveness(conn: Conn): void {
    this.#clock.clearTimeout(conn.liveness);
    const h = this.#heartbeatMs;
    const idle = this.#clock.now() - conn.lastFrameAt;
    if (idle >= 2 * h) {
      this.#stats.livenessTimeouts++;
      this.emit("error", {
        code: "liveness",
        message: `nothing received for ${idle} ms (2 × heartbeat ${h} ms): replacing the socket`,
      });
      this.#drop(conn, undefined, "liveness timeout", undefined);
      return;
    }
    if (idle >= h && !conn.pinged && conn.openedAt !== undefined) {
      conn.pinged = true;
      this.#send(conn, { type: "ping", id: this.#id("ping") }, true);
    }
    const next = idle < h ? h - idle : 2 * h - idle;
    conn.liveness = this.#clock.setTimeout(() => this.#armLiveness(conn), next);
  }

  #scheduleRefresh(conn: Conn, expiresAt: number): void {
    this.#clock.clearTimeout(conn.refresh);
    conn.refresh = undefined;
    if (!this.#token) return;
    const left = expiresAt - this.#clock.now();
    // An already expired token is not refreshed in a loop: `token_expired` will come.
    if (left <= 0) return;
    // At most one refresh a second: a `token()` that keeps returning the same token must not
    // turn its last second into a storm of `auth` frames. A refresh that would come at or
    // after `exp` is not scheduled (`token_expired` will come, and refresh then).
    const delay = Math.max(1000, left - Math.min(this.#refreshBeforeMs, left / 2));
    if (delay >= left) return;
    conn.refresh = this.#clock.setTimeout(() => void this.#refreshToken(conn), delay);
  }

  async #refreshToken(conn: Conn): Promise<boolean> {
    if (!this.#token || conn.refreshing) return false;
    conn.refreshing = true;
    let token: string | undefined;
    try {
      token = await this.#fetchToken();
    } catch (e) {
      this.emit("error", { code: "token", message: `token() failed: ${String(e)}` });
      return false;
    } finally {
      conn.refreshing = false;
    }
    if (this.#conn !== conn || !token) return false;
    this.#stats.tokenRefreshes++;
    this.#send(conn, { type: "auth", id: this.#id("auth"), token }, true);
    return true;
  }

  /**
   * Calls `token()` now and sends the result in an `auth` frame on the open connection (e.g.
   * after the user signed in); the answer comes as an `authenticated` or `error` event. Resolves
   * `false` when nothing was sent (no open connection, no token); every later socket uses
   * `token()` anyway.
   */
  authenticate(): Promise<boolean> {
    const conn = this.#openConn();
    return conn ? this.#refreshToken(conn) : Promise.resolve(false);
  }

  /** Sends a `ping`; resolves with the round trip in ms when the `pong` comes. */
  ping(): Promise<number> {
    const conn = this.#openConn();
    if (!conn) return Promise.reject(new Error("not connected"));
    return new Promise<number>((resolve, reject) => {
      this.#send(conn, { type: "ping", id: this.#id("ping") }, true, {
        kind: "ping",
        sentAt: this.#clock.now(),
        resolve,
        reject,
      });
    });
  }

  // ---- sending ------------------------------------------------------------------------

  /** Request ids: `sub-1`, `unsub-2`, `auth-3`, `ping-4`, … */
  #id(kind: "sub" | "unsub" | "auth" | "ping"): string {
    return `${kind}-${++this.#seq}`;
  }

  /** Queues a frame; sent at most `maxMessagesPerSecond` (urgent ones jump the queue). */
  #send(conn: Conn, frame: ClientFrame, urgent = false, pending?: Pending): void {
    if (frame.id !== undefined) this.#pending.set(frame.id, pending ?? { kind: "other" });
    const text = JSON.stringify(frame);
    if (urgent) conn.queue.unshift(text);
    else conn.queue.push(text);
    this.#flush(conn);
  }

  #flush(conn: Conn): void {
    if (this.#conn !== conn || conn.ws.readyState !== OPEN) return;
    const now = this.#clock.now();
    conn.tokens = Math.min(this.#rate, conn.tokens + ((now - conn.refilledAt) * this.#rate) / 1000);
    conn.refilledAt = now;
    while (conn.queue.length > 0 && conn.tokens >= 1) {
      const text = conn.queue.shift() as string;
      conn.tokens -= 1;
      try {
        conn.ws.send(text);
      } catch (e) {
        this.emit("error", { code: "transport", message: `send failed: ${String(e)}` });
        return;
      }
    }
    if (conn.queue.length > 0 && conn.drain === undefined) {
      const wait = Math.ceil(((1 - conn.tokens) * 1000) / this.#rate);
      conn.drain = this.#clock.setTimeout(() => {
        conn.drain = undefined;
        this.#flush(conn);
      }, wait);
    }
  }

  #sendSubscribe(
    conn: Conn,
    entry: Entry,
    recover: Record<string, number> | undefined,
    wildcards: string[],
  ): void {
    const { bundle, tokens, channels, snapshot, maxRate, batchMs } = entry.spec;
    const frame: SubscribeFrame = { type: "subscribe", id: this.#id("sub") };
    // Only fields that are set: the gateway refuses unknown (and so newer) fields.
    if (bundle !== undefined) frame.bundle = bundle;
    if (tokens !== undefined && tokens.length > 0) frame.tokens = tokens;
    if (channels !== undefined && channels.length > 0) frame.channels = channels;
    if (snapshot) frame.snapshot = true;
    if (maxRate !== undefined) frame.maxRate = maxRate;
    if (batchMs !== undefined) frame.batchMs = batchMs;
    if (recover && Object.keys(recover).length > 0) frame.recover = recover;
    this.#send(conn, frame, false, { kind: "subscribe", entry, frame, wildcards });
  }

  /**
   * Sends the whole subscription set on a new socket. Confirmed channels are recovered from
   * their last offset, each in the first frame naming it; frames with wildcards go last, since
   * the gateway does not recover a channel a wildcard already delivers live.
   */
  #resubscribeAll(conn: Conn): void {
    const toRecover = new Set<string>();
    for (const e of this.#entries) {
      if (e.acked) for (const c of e.channels) if (!isWildcard(c)) toRecover.add(c);
    }
    const hasWildcard = (e: Entry) => e.channels.some(isWildcard);
    const ordered = [...this.#entries].sort((a, b) => Number(hasWildcard(a)) - Number(hasWildcard(b)));
    for (const entry of ordered) {
      const recover: Record<string, number> = {};
      for (const c of entry.channels) {
        if (!toRecover.delete(c)) continue;
        const last = this.#cursors.get(c);
        if (last !== undefined) recover[c] = last;
        else if (this.#recoverUnseen) recover[c] = -1;
      }
      const wildcards = entry.acked ? entry.channels.filter(isWildcard) : [];
      this.#sendSubscribe(conn, entry, recover, wildcards);
    }
  }

  #unsubscribe(entry: Entry): void {
    if (!this.#entries.delete(entry)) return;
    entry.settle?.reject(new Error("unsubscribed before the gateway confirmed the subscription"));
    entry.settle = undefined;
    const kept = new Set<string>();
    for (const e of this.#entries) for (const c of e.channels) kept.add(c);
    const drop = entry.channels.filter((c) => !kept.has(c));
    for (const c of drop) {
      this.#cursors.delete(c);
      this.#gaps.delete(c);
    }
    const conn = this.#openConn();
    if (conn && drop.length > 0) {
      this.#send(conn, { type: "unsubscribe", id: this.#id("unsub"), channels: drop });
    }
  }

  /**
   * Unsubscribes channels by name, whichever subscriptions hold them (a bundle subscription
   * left with other channels keeps those, as explicit channels); a subscription left with none
   * ends. Channels no subscription holds are ignored.
   */
  unsubscribe(channels: readonly string[]): void {
    const gone = new Set(channels);
    const dropped: string[] = [];
    const dropCursor = (c: string) => {
      if (dropped.includes(c)) return;
      dropped.push(c);
      this.#cursors.delete(c);
      this.#gaps.delete(c);
    };
    for (const entry of [...this.#entries]) {
      if (!entry.channels.some((c) => gone.has(c))) continue;
      const left = entry.channels.filter((c) => !gone.has(c));
      for (const c of entry.channels) if (gone.has(c)) dropCursor(c);
      if (left.length === 0) {
        this.#entries.delete(entry);
        entry.settle?.reject(new Error("unsubscribed before the gateway confirmed the subscription"));
        entry.settle = undefined;
        continue;
      }
      const spec: SubscriptionSpec = { ...entry.spec, channels: left };
      delete spec.bundle;
      delete spec.tokens;
      entry.spec = spec;
      entry.channels = left;
      entry.set = new Set(left);
    }
    const conn = this.#openConn();
    if (conn && dropped.length > 0) {
      this.#send(conn, { type: "unsubscribe", id: this.#id("unsub"), channels: dropped });
    }
  }

  // ---- receiving ----------------------------------------------------------------------

  #onMessage(conn: Conn, data: unknown): void {
    conn.lastFrameAt = this.#clock.now();
    conn.pinged = false;
    this.#stats.frames++;
    const text = frameText(data);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text ?? "") as ServerFrame;
    } catch {
      this.emit("error", { code: "transport", message: "a frame that is not JSON" });
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "event":
        this.#onEvent(frame);
        break;
      case "events":
        if (Array.isArray(frame.events)) for (const e of frame.events) this.#onEvent(e);
        break;
      case "subscribed":
        this.#onSubscribed(frame);
        break;
      case "unsubscribed": {
        const pending = this.#take(frame.id);
        if (pending?.kind === "gap-unsubscribe") this.#recoverGap(conn, pending.channel, pending.from);
        break;
      }
      case "error":
        this.#onError(conn, frame);
        break;
      case "authenticated":
        this.#take(frame.id);
        if (typeof frame.expiresAt === "number") this.#scheduleRefresh(conn, frame.expiresAt);
        this.emit("authenticated", { userId: frame.userId, expiresAt: frame.expiresAt });
        break;
      case "pong": {
        const pending = this.#take(frame.id);
        if (pending?.kind === "ping") pending.resolve(this.#clock.now() - pending.sentAt);
        break;
      }
      case "heartbeat":
        break;
      case "gap":
        this.#onGap(conn, frame);
        break;
      case "reconnect":
        // The gateway asks to move (e.g. it is draining): at once, no backoff.
        this.#drop(conn, undefined, `reconnect requested${frame.reason ? `: ${frame.reason}` : ""}`, 0);
        break;
      default:
        // A newer gateway's frame: ignored.
        break;
    }
    this.emit("frame", frame);
  }

  #take(id: unknown): Pending | undefined {
    if (typeof id !== "string") return undefined;
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
  }

  #onEvent(e: EventFrame): void {
    if (!e || typeof e.channel !== "string" || typeof e.offset !== "number") return;
    const channel = e.channel;
    if (this.#gaps.get(channel) === "draining") {
      this.#stats.drained++;
      return;
    }
    const wildcard = wildcardOf(channel);
    const targets = [...this.#entries].filter((x) => x.set.has(channel) || x.set.has(wildcard));
    // Late frames of a channel just unsubscribed: never shown.
    if (targets.length === 0) return;
    const last = this.#cursors.get(channel);
    if (last !== undefined && e.offset <= last) {
      this.#stats.duplicates++;
      return;
    }
    this.#cursors.set(channel, e.offset);
    this.#stats.events++;
    this.emit("event", e);
    for (const t of targets) {
      if (!t.listener) continue;
      try {
        t.listener(e);
      } catch (err) {
        console.error("@odin-stream/client: a subscription listener threw", err);
      }
    }
  }

  #onSubscribed(f: SubscribedFrame): void {
    const pending = this.#take(f.id);
    if (pending?.kind === "subscribe") {
      const entry = pending.entry;
      if (this.#entries.has(entry)) {
        entry.acked = true;
        entry.settle?.resolve(f);
        entry.settle = undefined;
        for (const channel of pending.wildcards) this.emit("stale", { channel, reason: "wildcard" });
      }
    } else if (pending?.kind === "gap-subscribe") {
      this.#gaps.delete(pending.channel);
    }
    for (const [channel, r] of Object.entries(f.recovery ?? {})) {
      if (r.recovered) {
        this.emit("recovered", { channel, replayed: r.replayed });
        continue;
      }
      const reason: RecoveryReason = r.reason ?? "unavailable";
      // The log was recreated: its offsets start again, the old cursor would hide everything.
      if (reason === "beyond_log_end") this.#cursors.delete(channel);
      this.emit("stale", { channel, reason });
    }
  }

  #onError(conn: Conn, f: ErrorFrame): void {
    const pending = this.#take(f.id);
    if (f.code === "token_expired") void this.#refreshToken(conn);
    if (pending?.kind === "subscribe") {
      const entry = pending.entry;
      if (f.code === "rate_limited") {
        // Ignored by the gateway: send it again shortly (same frame, fresh id).
        const frame: SubscribeFrame = { ...pending.frame, id: this.#id("sub") };
        const retry = { ...pending, frame };
        this.#clock.setTimeout(() => {
          if (this.#conn === conn && this.#entries.has(entry)) this.#send(conn, frame, false, retry);
        }, RATE_LIMITED_RETRY_MS);
      } else if (!entry.acked) {
        // Refused outright (unknown bundle, too many channels…): not kept for reconnects.
        this.#entries.delete(entry);
        entry.settle?.reject(Object.assign(new Error(f.message), { code: f.code }));
        entry.settle = undefined;
      }
    } else if (pending?.kind === "gap-unsubscribe" || pending?.kind === "gap-subscribe") {
      this.#gaps.delete(pending.channel);
      this.emit("stale", { channel: pending.channel, reason: "gap" });
    }
    const info: ClientErrorInfo = { code: f.code, message: f.message };
    if (f.id !== undefined) info.id = f.id;
    this.emit("error", info);
  }

  /** A `gap` frame: unsubscribe the channel, then subscribe it recovering from the gap. */
  #onGap(conn: Conn, g: GapFrame): void {
    this.#stats.gaps++;
    this.emit("gap", g);
    const channel = g.channel;
    if (typeof channel !== "string" || typeof g.fromOffset !== "number" || this.#gaps.has(channel)) return;
    const entries = [...this.#entries];
    const explicit = entries.some((e) => e.set.has(channel));
    const viaWildcard = entries.some((e) => e.set.has(wildcardOf(channel)));
    const last = this.#cursors.get(channel);
    if (!explicit || viaWildcard || (last !== undefined && last >= g.fromOffset)) {
      // Not recoverable on this connection (a wildcard delivers it live, so the gateway
      // would refuse the replay), or the application already saw later events.
      if (explicit || viaWildcard) this.emit("stale", { channel, reason: "gap" });
      return;
    }
    this.#gaps.set(channel, "draining");
    this.#send(conn, { type: "unsubscribe", id: this.#id("unsub"), channels: [channel] }, false, {
      kind: "gap-unsubscribe",
      channel,
      from: g.fromOffset - 1,
    });
  }

  #recoverGap(conn: Conn, channel: string, from: number): void {
    if (this.#gaps.get(channel) !== "draining") return;
    const entry = [...this.#entries].find((e) => e.set.has(channel));
    if (!entry) {
      this.#gaps.delete(channel);
      return;
    }
    this.#gaps.set(channel, "replaying");
    const frame: SubscribeFrame = {
      type: "subscribe",
      id: this.#id("sub"),
      channels: [channel],
      recover: { [channel]: from },
    };
    if (entry.spec.maxRate !== undefined) frame.maxRate = entry.spec.maxRate;
    if (entry.spec.batchMs !== undefined) frame.batchMs = entry.spec.batchMs;
    this.#send(conn, frame, false, { kind: "gap-subscribe", channel });
  }
}

/** Creates a client and starts connecting. */
export function connect(options: ClientOptions): OdinClient {
  return new OdinClient(options).connect();
}
