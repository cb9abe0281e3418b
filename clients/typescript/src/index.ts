/**
 * `@odin-stream/client`: the Odin Stream gateway client for browsers and Node ≥ 20.
 *
 * - {@link OdinClient} / {@link connect}: the connection state machine (auth, reconnect,
 *   lossless recovery, gap handling, liveness) — `client.ts`;
 * - event types, categories and bundles generated from the Rust definitions — `generated.ts`;
 * - the wire frames, error codes, close codes and recovery reasons — `protocol.ts`;
 * - channel parsing and subscription expansion — `channels.ts`.
 */

export {
  connect,
  OdinClient,
  type ClientErrorInfo,
  type ClientEvents,
  type ClientOptions,
  type ClientStats,
  type Clock,
  type ConnectionState,
  type RecoveredChannel,
  type StaleChannel,
  type StateChange,
  type Subscription,
  type SubscriptionSpec,
  type TokenTransport,
  type UrlSource,
} from "./client.js";
export { expandSubscription, isWildcard, parseChannel, wildcardOf } from "./channels.js";
export * from "./generated.js";
export * from "./protocol.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
