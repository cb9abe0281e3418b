// Generated from crates/odin-events and crates/bundles by
// crates/bundles/tests/typescript.rs. Do not edit by hand; regenerate with
//   ODIN_REGENERATE_TS=1 cargo test -p bundles --test typescript

/** The eight categories: each is a channel suffix (`BTC.trade`). */
export const CATEGORIES = ["trade", "liquidity", "metadata", "social", "community", "creation", "analytics", "balances"] as const;
export type Category = (typeof CATEGORIES)[number];

/** The 23 event types, grouped by category in canonical order. */
export const EVENT_TYPES = [
  "TRADE_EXECUTED",
  "BUY_COMPLETED",
  "SELL_COMPLETED",
  "LIQUIDITY_ADDED",
  "LIQUIDITY_REMOVED",
  "LIQUIDITY_REBALANCED",
  "METADATA_UPDATED",
  "TOKEN_NAME_CHANGED",
  "TOKEN_FLAGS_CHANGED",
  "TWITTER_VERIFIED",
  "SOCIAL_LINKS_UPDATED",
  "COMMENT_POSTED",
  "COMMENT_PINNED",
  "COMMENT_UPVOTED",
  "FAVORITE_TOGGLED",
  "TOKEN_CREATED",
  "TOKEN_LISTED",
  "PRICE_DELTA_UPDATED",
  "HOLDER_COUNT_UPDATED",
  "ANALYTICS_RECALCULATED",
  "TRENDING_UPDATED",
  "BALANCE_UPDATED",
  "TRANSFER_COMPLETED",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The event types of each category. */
export interface EventTypesByCategory {
  trade: "TRADE_EXECUTED" | "BUY_COMPLETED" | "SELL_COMPLETED";
  liquidity: "LIQUIDITY_ADDED" | "LIQUIDITY_REMOVED" | "LIQUIDITY_REBALANCED";
  metadata: "METADATA_UPDATED" | "TOKEN_NAME_CHANGED" | "TOKEN_FLAGS_CHANGED";
  social: "TWITTER_VERIFIED" | "SOCIAL_LINKS_UPDATED";
  community: "COMMENT_POSTED" | "COMMENT_PINNED" | "COMMENT_UPVOTED" | "FAVORITE_TOGGLED";
  creation: "TOKEN_CREATED" | "TOKEN_LISTED";
  analytics: "PRICE_DELTA_UPDATED" | "HOLDER_COUNT_UPDATED" | "ANALYTICS_RECALCULATED" | "TRENDING_UPDATED";
  balances: "BALANCE_UPDATED" | "TRANSFER_COMPLETED";
}

/** The category (and so the channel suffix) of each event type. */
export const EVENT_CATEGORY: { readonly [T in EventType]: Category } = {
  TRADE_EXECUTED: "trade",
  BUY_COMPLETED: "trade",
  SELL_COMPLETED: "trade",
  LIQUIDITY_ADDED: "liquidity",
  LIQUIDITY_REMOVED: "liquidity",
  LIQUIDITY_REBALANCED: "liquidity",
  METADATA_UPDATED: "metadata",
  TOKEN_NAME_CHANGED: "metadata",
  TOKEN_FLAGS_CHANGED: "metadata",
  TWITTER_VERIFIED: "social",
  SOCIAL_LINKS_UPDATED: "social",
  COMMENT_POSTED: "community",
  COMMENT_PINNED: "community",
  COMMENT_UPVOTED: "community",
  FAVORITE_TOGGLED: "community",
  TOKEN_CREATED: "creation",
  TOKEN_LISTED: "creation",
  PRICE_DELTA_UPDATED: "analytics",
  HOLDER_COUNT_UPDATED: "analytics",
  ANALYTICS_RECALCULATED: "analytics",
  TRENDING_UPDATED: "analytics",
  BALANCE_UPDATED: "balances",
  TRANSFER_COMPLETED: "balances",
};

/** Subscription bundles: named sets of categories. */
export const BUNDLES = ["TRADING", "FULL_MARKET", "COMMUNITY", "PORTFOLIO", "PRICE_ONLY", "ALL"] as const;
export type BundleName = (typeof BUNDLES)[number];

/** The categories of each bundle, in the order the contract lists them. */
export const BUNDLE_CATEGORIES: { readonly [B in BundleName]: readonly Category[] } = {
  TRADING: ["trade", "liquidity", "analytics"],
  FULL_MARKET: ["trade", "liquidity", "analytics", "metadata"],
  COMMUNITY: ["community", "social", "metadata"],
  PORTFOLIO: ["trade", "analytics", "balances"],
  PRICE_ONLY: ["trade", "analytics"],
  ALL: ["trade", "liquidity", "metadata", "social", "community", "creation", "analytics", "balances"],
};

/** The token that means every token: `*.creation`. */
export const WILDCARD_TOKEN = "*";
/** Longest token id; tokens are 1–64 of `[A-Za-z0-9_:-]`. */
export const MAX_TOKEN_LEN = 64;
/** Default cap on the channels one connection may hold. */
export const DEFAULT_MAX_CHANNELS = 1000;
