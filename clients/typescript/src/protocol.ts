/**
 * The gateway's wire protocol (docs/protocol.md): client and server frames, error codes,
 * close codes and recovery reasons. The event types, categories and bundles come from the
 * Rust source of truth through `generated.ts`; the codes below are listed by hand from
 * docs/protocol.md because they live in the gateway crate, not in a pure one.
 */

import type { BundleName, EventType } from "./generated.js";

/** Error codes of `{"type":"error","code":…}` frames. */
export const ERROR_CODES = [
  "bad_request",
  "unknown_bundle",
  "invalid_channel",
  "too_many_subscriptions",
  "rate_limited",
  "unauthorized",
  "token_expired",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** WebSocket close codes the gateway uses, and what they mean. */
export const CLOSE_CODES = {
  /** Graceful shutdown (`server shutting down`) or `idle timeout`. */
  GOING_AWAY: 1001,
  /** A text frame that is not valid UTF-8. */
  INVALID_PAYLOAD: 1007,
  /** `too many invalid messages`, `rate limit exceeded`, `slow consumer`, `token expired`. */
  POLICY_VIOLATION: 1008,
  /** A frame or message over `WS_MAX_FRAME_BYTES`. */
  MESSAGE_TOO_BIG: 1009,
} as const;

/** Why a channel could not be recovered (`"recovered":false`). */
export const RECOVERY_REASONS = [
  "retention",
  "beyond_log_end",
  "too_many_records",
  "timeout",
  "unavailable",
  "overrun",
  "not_subscribed",
  "already_subscribed",
] as const;
export type RecoveryReason = (typeof RECOVERY_REASONS)[number];

/**
 * Why the client reports a channel as stale: a gateway recovery reason, or
 * - `wildcard`: a `*` channel was re-subscribed after a reconnect; wildcards cannot be recovered;
 * - `gap`: a `gap` frame named offsets the application had already passed, or a channel
 *   received only through a wildcard.
 */
export type StaleReason = RecoveryReason | "wildcard" | "gap";

/** Options of a subscribe frame (passed through to the gateway only when set). */
export interface SubscribeOptions {
  /** Send each concrete channel's retained state first (`"snapshot":true` event frames). */
  snapshot?: boolean;
  /** At most N events per channel per second (conflated categories only), 1–100. */
  maxRate?: number;
  /** Deliver the connection's events as `{"type":"events"}` batches every M ms, 10–1000. */
  batchMs?: number;
}

export interface SubscribeFrame extends SubscribeOptions {
  type: "subscribe";
  id?: string;
  bundle?: BundleName;
  tokens?: string[];
  channels?: string[];
  recover?: Record<string, number>;
}

export interface UnsubscribeFrame {
  type: "unsubscribe";
  id?: string;
  bundle?: BundleName;
  tokens?: string[];
  channels?: string[];
}

export interface AuthFrame {
  type: "auth";
  id?: string;
  token: string;
}

export interface PingFrame {
  type: "ping";
  id?: string;
}

export type ClientFrame = SubscribeFrame | UnsubscribeFrame | AuthFrame | PingFrame;

/** One event as the gateway sends it. */
export interface EventFrame {
  type: "event";
  channel: string;
  /** One of the 23 event types (typed loosely so a newer gateway's types still pass). */
  event: EventType | (string & {});
  /** Event time, epoch ms. */
  timestamp: number;
  eventId?: string;
  /** Kafka offset in the channel's partition: increases along a channel. */
  offset: number;
  data: unknown;
  /** Part of a subscribe's snapshot, not live. */
  snapshot?: boolean;
  /** How many older events of the same type this one replaced (rate shaping). */
  conflated?: number;
}

export interface ChannelRecovery {
  recovered: boolean;
  replayed: number;
  reason?: RecoveryReason;
}

export interface SubscribedFrame {
  type: "subscribed";
  id?: unknown;
  channels: string[];
  recovery?: Record<string, ChannelRecovery>;
  snapshot?: Record<string, unknown>;
}

export interface UnsubscribedFrame {
  type: "unsubscribed";
  id?: unknown;
  channels: string[];
}

export interface ErrorFrame {
  type: "error";
  id?: unknown;
  code: ErrorCode | (string & {});
  message: string;
}

export interface AuthenticatedFrame {
  type: "authenticated";
  id?: unknown;
  userId: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface PongFrame {
  type: "pong";
  id?: unknown;
  timestamp: number;
}

export interface EventsFrame {
  type: "events";
  events: EventFrame[];
}

export interface GapFrame {
  type: "gap";
  channel: string;
  fromOffset: number;
  toOffset: number;
  dropped: number;
}

export interface HeartbeatFrame {
  type: "heartbeat";
  timestamp?: number;
}

export interface ReconnectFrame {
  type: "reconnect";
  reason?: string;
}

export type ServerFrame =
  | EventFrame
  | EventsFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | ErrorFrame
  | AuthenticatedFrame
  | PongFrame
  | GapFrame
  | HeartbeatFrame
  | ReconnectFrame;
