/** URL lists and providers, the `frame` token transport, and the console-facing API
 * (`authenticate`, `ping`, `unsubscribe(channels)`, the `frame` event), with the fake socket. */

import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { OdinClient, type ClientOptions, type ServerFrame } from "../src/index.js";
import { event, FakeClock, FakeSocket, jwt, settle } from "./fake.js";

function client(options: Partial<ClientOptions> = {}): { client: OdinClient; clock: FakeClock } {
  const clock = new FakeClock();
  const c = new OdinClient({ url: "ws://a.test/ws", WebSocket: FakeSocket, clock, random: () => 0, ...options });
  return { client: c, clock };
}

async function nextSocket(): Promise<FakeSocket> {
  await settle();
  return FakeSocket.last();
}

beforeEach(() => {
  FakeSocket.instances = [];
});

describe("url sources", () => {
  it("a list: the first instance first, every reconnect moves to the next (round robin)", async () => {
    const { client: c, clock } = client({ url: ["ws://a.test/ws", "ws://b.test/ws"] });
    c.subscribe({ channels: ["BTC.trade"] });
    c.connect();
    const a = await nextSocket();
    assert.equal(a.url, "ws://a.test/ws");
    a.open();
    a.ackSubscribes();
    a.receive(event("BTC.trade", 7));
    a.serverClose(1006);
    await clock.advance(10_000);
    const b = FakeSocket.last();
    assert.equal(b.url, "ws://b.test/ws");
    assert.equal(c.url, "ws://b.test/ws");
    b.open();
    // On the other instance the channel is recovered from the last offset seen.
    assert.deepEqual(b.frames("subscribe")[0]?.["recover"], { "BTC.trade": 7 });
    b.serverClose(1006);
    await clock.advance(10_000);
    assert.equal(FakeSocket.last().url, "ws://a.test/ws");
    c.close();
  });

  it("a function: called before every attempt", async () => {
    let calls = 0;
    const { client: c, clock } = client({ url: async () => `ws://gw${++calls}.test/ws` });
    c.connect();
    const first = await nextSocket();
    assert.equal(first.url, "ws://gw1.test/ws");
    first.open();
    first.serverClose(1006);
    await clock.advance(10_000);
    assert.equal(FakeSocket.last().url, "ws://gw2.test/ws");
    c.close();
  });

  it("refuses an empty list", () => {
    assert.throws(() => new OdinClient({ url: [] }), TypeError);
  });
});

describe("token transport", () => {
  it("frame: the token goes in an auth frame before the subscriptions, not on the URL", async () => {
    const token = jwt(Math.floor(1_700_000_000 + 3600));
    const { client: c } = client({ token: async () => token, tokenTransport: "frame" });
    c.subscribe({ channels: ["BTC.balances"] });
    c.connect();
    const s = await nextSocket();
    assert.equal(s.url, "ws://a.test/ws");
    s.open();
    assert.deepEqual(
      s.sent.map((f) => f["type"]),
      ["auth", "subscribe"],
    );
    assert.equal(s.sent[0]?.["token"], token);
    c.close();
  });

  it("an empty token is an anonymous connection (no ?token=, no auth frame)", async () => {
    for (const tokenTransport of ["query", "frame"] as const) {
      FakeSocket.instances = [];
      const { client: c } = client({ token: () => "", tokenTransport });
      c.subscribe({ channels: ["BTC.trade"] });
      c.connect();
      const s = await nextSocket();
      assert.equal(s.url, "ws://a.test/ws", tokenTransport);
      s.open();
      assert.deepEqual(s.frames("auth"), [], tokenTransport);
      assert.equal(await c.authenticate(), false, "nothing to send");
      c.close();
    }
  });

  it("authenticate() sends the current token on the open connection", async () => {
    let token = "";
    const { client: c } = client({ token: () => token, tokenTransport: "frame" });
    const auth: string[] = [];
    c.on("authenticated", (a) => auth.push(a.userId));
    c.connect();
    const s = await nextSocket();
    s.open();
    token = jwt(1_700_003_600, "alice");
    assert.equal(await c.authenticate(), true);
    await settle();
    const [frame] = s.frames("auth");
    assert.equal(frame?.["token"], token);
    assert.match(String(frame?.["id"]), /^auth-/);
    s.receive({ type: "authenticated", id: frame?.["id"], userId: "alice", expiresAt: 1_700_003_600_000 });
    assert.deepEqual(auth, ["alice"]);
    c.close();
  });
});

describe("console-facing API", () => {
  it("ping() resolves with the round trip; a closed socket rejects it", async () => {
    const { client: c, clock } = client();
    await assert.rejects(c.ping(), /not connected/);
    c.connect();
    const s = await nextSocket();
    s.open();
    const rtt = c.ping();
    const [p] = s.frames("ping");
    await clock.advance(42);
    s.receive({ type: "pong", id: p?.["id"], timestamp: 1 });
    assert.equal(await rtt, 42);
    const lost = c.ping();
    s.serverClose(1006);
    await assert.rejects(lost, /closed before the pong/);
    c.close();
  });

  it("unsubscribe(channels) takes one channel out of a bundle subscription; the rest is recovered", async () => {
    const { client: c, clock } = client();
    const seen: string[] = [];
    c.subscribe({ bundle: "PRICE_ONLY", tokens: ["BTC"] }, (e) => seen.push(`${e.channel}@${e.offset}`));
    c.connect();
    const s = await nextSocket();
    s.open();
    s.ackSubscribes();
    s.receive(event("BTC.trade", 1));
    s.receive(event("BTC.analytics", 2));
    c.unsubscribe(["BTC.analytics", "ETH.trade"]);
    const [u] = s.frames("unsubscribe");
    assert.deepEqual(u?.["channels"], ["BTC.analytics"]);
    assert.match(String(u?.["id"]), /^unsub-/);
    // A late frame of the channel just left is not shown.
    s.receive(event("BTC.analytics", 3));
    assert.deepEqual(seen, ["BTC.trade@1", "BTC.analytics@2"]);
    s.serverClose(1006);
    await clock.advance(10_000);
    const s2 = FakeSocket.last();
    s2.open();
    const [resub] = s2.frames("subscribe");
    assert.deepEqual(resub?.["channels"], ["BTC.trade"]);
    assert.equal(resub?.["bundle"], undefined);
    assert.deepEqual(resub?.["recover"], { "BTC.trade": 1 });
    c.close();
  });

  it("unsubscribing every channel of a subscription ends it", async () => {
    const { client: c } = client();
    const sub = c.subscribe({ channels: ["BTC.trade"] });
    c.unsubscribe(["BTC.trade"]);
    await assert.rejects(sub.ready, /unsubscribed/);
    c.connect();
    const s = await nextSocket();
    s.open();
    assert.deepEqual(s.frames("subscribe"), []);
    c.close();
  });

  it("emits every server frame after handling it", async () => {
    const { client: c } = client();
    const frames: ServerFrame[] = [];
    c.on("frame", (f) => frames.push(f));
    c.subscribe({ channels: ["BTC.trade"] });
    c.connect();
    const s = await nextSocket();
    s.open();
    s.ackSubscribes();
    s.receive(event("BTC.trade", 1));
    s.receive({ type: "error", code: "bad_request", message: "x" });
    s.receive({ type: "something_newer" });
    assert.deepEqual(
      frames.map((f) => f.type),
      ["subscribed", "event", "error", "something_newer"],
    );
    c.close();
  });
});
