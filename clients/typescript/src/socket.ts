/**
 * The WebSocket the client drives: the global one (browsers, Node ≥ 22) or the `ws` package
 * (Node 20, which has no stable global WebSocket). Only the small surface both share is used.
 */

/** The part of the WHATWG WebSocket the client uses; `ws` implements it too. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `WebSocket.OPEN`. */
export const OPEN = 1;

let fallback: Promise<WebSocketConstructor> | undefined;

/** The global `WebSocket` if there is one, else the `ws` package's (loaded once, lazily). */
export function resolveWebSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof global === "function") return Promise.resolve(global as WebSocketConstructor);
  // A variable specifier keeps bundlers for the browser from pulling `ws` in.
  const specifier = "ws";
  fallback ??= import(specifier).then(
    (m: { default?: unknown; WebSocket?: unknown }) => (m.default ?? m.WebSocket) as WebSocketConstructor,
    (e: unknown) => {
      fallback = undefined;
      throw new Error(`no global WebSocket and the "ws" package cannot be loaded: ${String(e)}`);
    },
  );
  return fallback;
}

/** A text frame's payload as a string (binary frames are not part of the protocol). */
export function frameText(data: unknown): string | undefined {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return undefined;
}
