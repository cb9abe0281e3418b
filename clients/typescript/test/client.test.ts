/** The connection state machine against a fake socket and a manual clock. */

import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { OdinClient, type ClientOptions, type EventFrame, type StaleChannel, type StateChange } from "../src/index.js";
import { event, FakeClock, FakeSocket, jwt, settle } from "./fake.js";

interface Harness {
  client: OdinClient;
  clock: FakeClock;
  events: EventFrame[];
  states: StateChange[];
  stale: StaleChannel[];
  errors: string[];
}

function harness(options: Partial<ClientOptions> = {}): Harness {
  const clock = (options.clock as FakeClock | undefined) ?? new FakeClock();
  const client = new OdinClient({
    url: "ws://gateway.test/ws",
    WebSocket: FakeSocket,
    clock,
    random: () => 0,
    ...options,
  });
  const h: Harness = { client, clock, events: [], states: [], stale: [], errors: [] };
  client.on("event", (e) => h.events.push(e));
  client.on("state", (s) => h.states.push(s));
  client.on("stale", (s) => h.stale.push(s));
  client.on("error", (e) => h.errors.push(`${e.code}: ${e.message}`));
  return h;
}

/** Connects and opens the socket; returns it. */
async function opened(h: Harness): Promise<FakeSocket> {
  if (h.client.state === "closed") h.client.connect();
  await settle();
  const s = FakeSocket.last();
  s.open();
  return s;
}

const offsets = (h: Harness, channel?: string) =>
  h.events.filter((e) => channel === undefined || e.channel === channel).map((e) => e.offset);

beforeEach(() => {
  FakeSocket.instances = [];
});

describe("connection", () => {
  it("connects, subscribes with the options passed through, and reports states", async () => {
    const h = harness();
    const sub = h.client.subscribe({ bundle: "TRADING", tokens: ["BTC"], snapshot: true, maxRate: 5, batchMs: 100 });
    assert.deepEqual(sub.channels, ["BTC.trade", "BTC.liquidity", "BTC.analytics"]);
    const s = await opened(h);
    assert.equal(s.url, "ws://gateway.test/ws");
    const [frame] = s.frames("subscribe");
    assert.deepEqual(frame, {
      type: "subscribe",
      id: frame?.["id"],
      bundle: "TRADING",
      tokens: ["BTC"],
      snapshot: true,
      maxRate: 5,
      batchMs: 100,
    });
    s.ackSubscribes();
    const reply = await sub.ready;
    assert.equal(reply.type, "subscribed");
    assert.deepEqual(
      h.states.map((x) => x.state),
      ["connecting", "open"],
    );
  });

  it("sends only the fields that are set (the gateway refuses unknown fields)", async () => {
    const h = harness();
    const s = await opened(h);
    h.client.subscribe({ channels: ["BTC.trade", "*.creation"] });
    const [frame] = s.frames("subscribe");
    assert.deepEqual(Object.keys(frame ?? {}).sort(), ["channels", "id", "type"]);
  });

  it("reconnects with jittered exponential backoff from 0.5 s to 15 s", async () => {
    const h = harness({ random: () => 0 });
    h.client.connect();
    await settle();
    const delays: number[] = [];
    h.client.on("state", (s) => {
      if (s.state === "reconnecting" && s.delayMs !== undefined) delays.push(s.delayMs);
    });
    for (let i = 0; i < 8; i++) {
      FakeSocket.last().serverClose(1006);
      await h.clock.advance(delays[delays.length - 1] ?? 0);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    assert.equal(FakeSocket.instances.length, 9);
  });

  it("jitters down to half the ceiling", async () => {
    const h = harness({ random: () => 1 });
    await opened(h);
    FakeSocket.last().serverClose(1006);
    const last = h.states[h.states.length - 1];
    assert.equal(last?.state, "reconnecting");
    assert.equal(last?.delayMs, 250);
    assert.equal(last?.code, 1006);
  });

  it("resets the backoff after a connection that stayed open", async () => {
    const h = harness();
    await opened(h);
    FakeSocket.last().serverClose(1006);
    await h.clock.advance(500);
    FakeSocket.last().serverClose(1006); // never opened: the next delay doubles
    assert.equal(h.states[h.states.length - 1]?.delayMs, 1000);
    await h.clock.advance(1000);
    FakeSocket.last().open();
    await h.clock.advance(6_000);
    FakeSocket.last().serverClose(1001, "server shutting down");
    assert.equal(h.states[h.states.length - 1]?.delayMs, 500);
  });

  it("reconnects at once on a reconnect frame", async () => {
    const h = harness();
    const s = await opened(h);
    s.receive({ type: "reconnect", reason: "draining" });
    assert.ok(s.closedWith, "the old socket is closed");
    assert.equal(h.states[h.states.length - 1]?.delayMs, 0);
    await h.clock.advance(0);
    assert.equal(FakeSocket.instances.length, 2);
  });

  it("stops on close() and can connect again", async () => {
    const h = harness();
    const s = await opened(h);
    h.client.close();
    assert.equal(h.client.state, "closed");
    assert.equal(s.closedWith?.code, 1000);
    await h.clock.advance(60_000);
    assert.equal(FakeSocket.instances.length, 1);
    assert.deepEqual(
      h.states.map((x) => x.state),
      ["connecting", "open", "closed"],
    );
    await opened(h);
    assert.equal(FakeSocket.instances.length, 2);
  });
});

describe("lossless reconnect", () => {
  it("re-subscribes with recover from the last offset of each channel", async () => {
    const h = harness();
    h.client.subscribe({ channels: ["BTC.trade", "ETH.trade"] });
    h.client.subscribe({ channels: ["*.creation"] });
    h.client.subscribe({ bundle: "PRICE_ONLY", tokens: ["BTC"] });
    const s1 = await opened(h);
    s1.ackSubscribes();
    s1.receive(event("BTC.trade", 10));
    s1.receive(event("BTC.trade", 12));
    s1.receive(event("BTC.analytics", 3));
    s1.serverClose(1001, "server shutting down");
    await h.clock.advance(500);
    const s2 = FakeSocket.last();
    assert.notEqual(s1, s2);
    s2.open();
    const subs = s2.frames("subscribe");
    assert.equal(subs.length, 3);
    // Concrete channels first, each recovered once; the wildcard frame last, without recover.
    assert.deepEqual(subs[0]?.["recover"], { "BTC.trade": 12, "ETH.trade": -1 });
    assert.deepEqual(subs[1]?.["bundle"], "PRICE_ONLY");
    assert.deepEqual(subs[1]?.["recover"], { "BTC.analytics": 3 });
    assert.deepEqual(subs[2]?.["channels"], ["*.creation"]);
    assert.equal(subs[2]?.["recover"], undefined);
    s2.ackSubscribes();
    assert.deepEqual(h.stale, [{ channel: "*.creation", reason: "wildcard" }]);
  });

  it("recovers nothing for unseen channels when recoverUnseen is off", async () => {
    const h = harness({ recoverUnseen: false });
    h.client.subscribe({ channels: ["BTC.trade", "ETH.trade"] });
    const s1 = await opened(h);
    s1.ackSubscribes();
    s1.receive(event("BTC.trade", 7));
    s1.serverClose();
    await h.clock.advance(500);
    const s2 = FakeSocket.last();
    s2.open();
    assert.deepEqual(s2.frames("subscribe")[0]?.["recover"], { "BTC.trade": 7 });
  });

  it("delivers every event once, in order, across the replay seam", async () => {
    const h = harness();
    const mine: number[] = [];
    h.client.subscribe({ channels: ["BTC.trade"] }, (e) => mine.push(e.offset));
    const s1 = await opened(h);
    s1.ackSubscribes();
    for (const o of [1, 2, 3]) s1.receive(event("BTC.trade", o));
    s1.serverClose();
    await h.clock.advance(500);
    const s2 = FakeSocket.last();
    s2.open();
    // A replay that (wrongly) repeats offset 3, then a batch frame with a duplicate inside.
    for (const o of [3, 4, 5]) s2.receive(event("BTC.trade", o));
    s2.receive({ type: "events", events: [event("BTC.trade", 5), event("BTC.trade", 6), event("BTC.trade", 7)] });
    s2.ackSubscribes(() => ({ "BTC.trade": { recovered: true, replayed: 3 } }));
    assert.deepEqual(offsets(h), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(mine, [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(h.client.stats.duplicates, 2);
    assert.equal(h.client.offsets.get("BTC.trade"), 7);
  });

  it("surfaces recovered:false as a stale event with the reason", async () => {
    const h = harness();
    const recovered: string[] = [];
    h.client.on("recovered", (r) => recovered.push(`${r.channel}:${r.replayed}`));
    h.client.subscribe({ channels: ["BTC.trade", "BTC.balances", "ETH.trade"] });
    const s1 = await opened(h);
    s1.ackSubscribes();
    s1.receive(event("BTC.trade", 100));
    s1.receive(event("BTC.balances", 50));
    s1.receive(event("ETH.trade", 9));
    s1.serverClose();
    await h.clock.advance(500);
    const s2 = FakeSocket.last();
    s2.open();
    s2.ackSubscribes(() => ({
      "BTC.trade": { recovered: true, replayed: 2 },
      "BTC.balances": { recovered: false, replayed: 0, reason: "retention" },
      "ETH.trade": { recovered: false, replayed: 0, reason: "beyond_log_end" },
    }));
    assert.deepEqual(recovered, ["BTC.trade:2"]);
    assert.deepEqual(h.stale, [
      { channel: "BTC.balances", reason: "retention" },
      { channel: "ETH.trade", reason: "beyond_log_end" },
    ]);
    // A recreated log starts its offsets again: the old cursor must not hide them.
    s2.receive(event("ETH.trade", 0));
    assert.deepEqual(offsets(h, "ETH.trade"), [9, 0]);
  });

  it("never shows a channel that is no longer subscribed; unsubscribes only what no one else holds", async () => {
    const h = harness();
    const a = h.client.subscribe({ channels: ["BTC.trade", "ETH.trade"] });
    h.client.subscribe({ channels: ["BTC.trade"] });
    const s = await opened(h);
    s.ackSubscribes();
    a.unsubscribe();
    assert.deepEqual(s.frames("unsubscribe").map((f) => f["channels"]), [["ETH.trade"]]);
    s.receive(event("ETH.trade", 1));
    s.receive(event("BTC.trade", 1));
    assert.deepEqual(h.events.map((e) => e.channel), ["BTC.trade"]);
  });

  it("drops a subscription the gateway refuses", async () => {
    const h = harness();
    const s = await opened(h);
    const sub = h.client.subscribe({ channels: ["BTC.trade"] });
    const id = s.frames("subscribe")[0]?.["id"];
    s.receive({ type: "error", id, code: "too_many_subscriptions", message: "limit" });
    await assert.rejects(sub.ready, /limit/);
    s.serverClose();
    await h.clock.advance(500);
    FakeSocket.last().open();
    assert.equal(FakeSocket.last().frames("subscribe").length, 0);
  });

  it("sends a rate-limited subscribe again", async () => {
    const h = harness();
    const s = await opened(h);
    h.client.subscribe({ channels: ["BTC.trade"] });
    const id = s.frames("subscribe")[0]?.["id"];
    s.receive({ type: "error", id, code: "rate_limited", message: "slow down" });
    await h.clock.advance(1_000);
    assert.equal(s.frames("subscribe").length, 2);
  });

  it("paces its frames under the gateway's message rate limit", async () => {
    const h = harness({ maxMessagesPerSecond: 15 });
    for (let i = 0; i < 20; i++) h.client.subscribe({ channels: [`T${i}.trade`] });
    const s = await opened(h);
    assert.equal(s.frames("subscribe").length, 15);
    await h.clock.advance(400);
    assert.equal(s.frames("subscribe").length, 20);
  });
});

describe("gaps", () => {
  it("recovers a gap by re-subscribing the channel from fromOffset - 1", async () => {
    const h = harness();
    h.client.subscribe({ bundle: "TRADING", tokens: ["BTC"], maxRate: 10 });
    const s = await opened(h);
    s.ackSubscribes();
    s.receive(event("BTC.trade", 1150));
    s.receive({ type: "gap", channel: "BTC.trade", fromOffset: 1200, toOffset: 1290, dropped: 37 });
    assert.deepEqual(s.frames("unsubscribe").map((f) => f["channels"]), [["BTC.trade"]]);
    // Live events before the unsubscribe took effect are dropped: the replay brings them in order.
    s.receive(event("BTC.trade", 1300));
    s.receive(event("BTC.liquidity", 5));
    s.receive({ type: "unsubscribed", id: s.frames("unsubscribe")[0]?.["id"], channels: ["BTC.trade"] });
    const resub = s.frames("subscribe")[1];
    assert.deepEqual(resub, {
      type: "subscribe",
      id: resub?.["id"],
      channels: ["BTC.trade"],
      recover: { "BTC.trade": 1199 },
      maxRate: 10,
    });
    for (const o of [1200, 1250, 1290, 1300]) s.receive(event("BTC.trade", o));
    const recovered: string[] = [];
    h.client.on("recovered", (r) => recovered.push(`${r.channel}:${r.replayed}`));
    s.receive({
      type: "subscribed",
      id: resub?.["id"],
      channels: ["BTC.trade"],
      recovery: { "BTC.trade": { recovered: true, replayed: 4 } },
    });
    assert.deepEqual(offsets(h, "BTC.trade"), [1150, 1200, 1250, 1290, 1300]);
    assert.deepEqual(offsets(h, "BTC.liquidity"), [5]);
    assert.deepEqual(recovered, ["BTC.trade:4"]);
    assert.equal(h.client.stats.drained, 1);
    s.receive(event("BTC.trade", 1301));
    assert.deepEqual(offsets(h, "BTC.trade").slice(-1), [1301]);
  });

  it("reports a gap it cannot recover as stale", async () => {
    const h = harness();
    h.client.subscribe({ channels: ["*.creation"] });
    h.client.subscribe({ channels: ["BTC.trade"] });
    const s = await opened(h);
    s.ackSubscribes();
    s.receive({ type: "gap", channel: "NEW.creation", fromOffset: 5, toOffset: 9, dropped: 2 });
    s.receive(event("BTC.trade", 50));
    s.receive({ type: "gap", channel: "BTC.trade", fromOffset: 40, toOffset: 45, dropped: 2 });
    assert.deepEqual(h.stale, [
      { channel: "NEW.creation", reason: "gap" },
      { channel: "BTC.trade", reason: "gap" },
    ]);
    assert.equal(s.frames("unsubscribe").length, 0);
  });
});

describe("authentication", () => {
  it("puts the token on the URL and refreshes it before exp and on token_expired", async () => {
    let calls = 0;
    const clock = new FakeClock();
    const token = async () => {
      calls++;
      return jwt(Math.floor(clock.now() / 1000) + 120);
    };
    const h = harness({ token, clock, heartbeatMs: 3_600_000 });
    const s = await opened(h);
    assert.equal(calls, 1);
    assert.match(s.url, /\?token=ey/);
    // 120 s token, refreshed 30 s before exp.
    await h.clock.advance(89_000);
    assert.equal(s.frames("auth").length, 0);
    await h.clock.advance(1_000);
    assert.equal(calls, 2);
    const [auth] = s.frames("auth");
    assert.equal(typeof auth?.["token"], "string");
    const authed: number[] = [];
    h.client.on("authenticated", (a) => authed.push(a.expiresAt));
    s.receive({ type: "authenticated", id: auth?.["id"], userId: "alice", expiresAt: h.clock.now() + 60_000 });
    assert.deepEqual(authed, [h.clock.now() + 60_000]);
    s.receive({ type: "error", code: "token_expired", message: "token expired" });
    await settle();
    assert.equal(calls, 3);
    assert.equal(s.frames("auth").length, 2);
    // The authenticated reply's expiresAt schedules the next refresh (30 s before it).
    await h.clock.advance(29_000);
    assert.equal(calls, 3);
    await h.clock.advance(1_000);
    assert.equal(calls, 4);
  });

  it("fetches a fresh token for every new socket", async () => {
    let n = 0;
    const h = harness({ token: async () => `tok${++n}` });
    await opened(h);
    FakeSocket.last().serverClose();
    await h.clock.advance(500);
    assert.match(FakeSocket.last().url, /token=tok2$/);
  });

  it("retries when token() fails", async () => {
    let fail = true;
    const h = harness({
      token: async () => {
        if (fail) throw new Error("auth server down");
        return "tok";
      },
    });
    h.client.connect();
    await settle();
    assert.equal(FakeSocket.instances.length, 0);
    assert.match(h.errors[0] ?? "", /auth server down/);
    fail = false;
    await h.clock.advance(500);
    assert.equal(FakeSocket.instances.length, 1);
  });
});

describe("liveness", () => {
  it("pings after one heartbeat of silence and replaces the socket after two", async () => {
    const h = harness({ heartbeatMs: 15_000 });
    const s = await opened(h);
    await h.clock.advance(14_999);
    assert.equal(s.frames("ping").length, 0);
    await h.clock.advance(1);
    assert.equal(s.frames("ping").length, 1);
    s.receive({ type: "pong", id: s.frames("ping")[0]?.["id"], timestamp: 1 });
    await h.clock.advance(20_000);
    assert.equal(s.closedWith, undefined, "an answered ping keeps the socket");
    assert.equal(s.frames("ping").length, 2);
    await h.clock.advance(10_000);
    assert.ok(s.closedWith, "silent for 30 s: replaced");
    assert.equal(h.client.stats.livenessTimeouts, 1);
    assert.equal(h.client.state, "reconnecting");
    await h.clock.advance(500);
    assert.equal(FakeSocket.instances.length, 2);
  });

  it("gives up on a socket that never opens", async () => {
    const h = harness({ heartbeatMs: 1_000 });
    h.client.connect();
    await settle();
    await h.clock.advance(2_000);
    assert.ok(FakeSocket.last().closedWith);
    assert.equal(h.client.state, "reconnecting");
  });

  it("counts heartbeat and any other frame as life", async () => {
    const h = harness({ heartbeatMs: 1_000 });
    const s = await opened(h);
    for (let i = 0; i < 10; i++) {
      await h.clock.advance(900);
      s.receive({ type: "heartbeat", timestamp: i });
    }
    assert.equal(s.frames("ping").length, 0);
    assert.equal(s.closedWith, undefined);
  });
});
