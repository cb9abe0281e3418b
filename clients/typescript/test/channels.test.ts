import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  BUNDLE_CATEGORIES,
  BUNDLES,
  CATEGORIES,
  EVENT_CATEGORY,
  EVENT_TYPES,
  expandSubscription,
  parseChannel,
  wildcardOf,
} from "../src/index.js";

describe("generated definitions", () => {
  it("has the 23 event types, each in one of the eight categories", () => {
    assert.equal(EVENT_TYPES.length, 23);
    assert.equal(CATEGORIES.length, 8);
    for (const t of EVENT_TYPES) assert.ok(CATEGORIES.includes(EVENT_CATEGORY[t]));
    assert.equal(EVENT_CATEGORY.TRANSFER_COMPLETED, "balances");
  });

  it("has the six bundles", () => {
    assert.deepEqual([...BUNDLES], ["TRADING", "FULL_MARKET", "COMMUNITY", "PORTFOLIO", "PRICE_ONLY", "ALL"]);
    assert.deepEqual(BUNDLE_CATEGORIES.ALL, CATEGORIES);
  });
});

describe("expandSubscription", () => {
  it("expands like the gateway: bundle channels first, de-duplicated", () => {
    assert.deepEqual(
      expandSubscription({
        bundle: "PRICE_ONLY",
        tokens: ["BTC", "ETH", "BTC"],
        channels: ["BTC.trade", "*.creation", "SOL.balances"],
      }),
      ["BTC.trade", "BTC.analytics", "ETH.trade", "ETH.analytics", "*.creation", "SOL.balances"],
    );
  });

  it("refuses what the gateway would refuse", () => {
    assert.throws(() => expandSubscription({ bundle: "MEGA", tokens: ["BTC"] }), /unknown bundle/);
    assert.throws(() => expandSubscription({ bundle: "ALL" }), /at least one token/);
    assert.throws(() => expandSubscription({ tokens: ["BTC"] }), /without a bundle/);
    assert.throws(() => expandSubscription({ channels: ["BTC.nope"] }), /invalid channel/);
    assert.throws(() => expandSubscription({ channels: ["B C.trade"] }), /invalid channel/);
    assert.throws(() => expandSubscription({}), /nothing to subscribe/);
  });

  it("parses channels", () => {
    assert.deepEqual(parseChannel("BTC:x-1.trade"), { token: "BTC:x-1", category: "trade" });
    assert.deepEqual(parseChannel("*.creation"), { token: "*", category: "creation" });
    assert.equal(parseChannel(`${"a".repeat(65)}.trade`), undefined);
    assert.equal(wildcardOf("BTC.trade"), "*.trade");
  });
});
