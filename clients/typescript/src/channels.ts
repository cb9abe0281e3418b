/**
 * Channel names and the client-side expansion of a subscription (bundle × tokens, explicit
 * channels), mirroring `bundles::expand` so the client knows which concrete channels it
 * holds, which it may recover and which entries an event belongs to.
 */

import {
  BUNDLE_CATEGORIES,
  BUNDLES,
  CATEGORIES,
  MAX_TOKEN_LEN,
  WILDCARD_TOKEN,
  type BundleName,
  type Category,
} from "./generated.js";

const TOKEN = new RegExp(`^[A-Za-z0-9_:-]{1,${MAX_TOKEN_LEN}}$`);

/** `TOKEN.category` split, or `undefined` when `name` is not a channel. */
export function parseChannel(name: string): { token: string; category: Category } | undefined {
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const token = name.slice(0, dot);
  const category = name.slice(dot + 1);
  if (!(CATEGORIES as readonly string[]).includes(category)) return undefined;
  if (token !== WILDCARD_TOKEN && !TOKEN.test(token)) return undefined;
  return { token, category: category as Category };
}

export function isWildcard(channel: string): boolean {
  return channel.startsWith(`${WILDCARD_TOKEN}.`);
}

/** The wildcard channel covering `channel` (`*.trade` for `BTC.trade`). */
export function wildcardOf(channel: string): string {
  return `${WILDCARD_TOKEN}${channel.slice(channel.lastIndexOf("."))}`;
}

/**
 * The channels a subscription names, bundle channels first (tokens outer, categories inner),
 * then explicit channels, de-duplicated: the order of the gateway's `subscribed.channels`.
 * Throws a `TypeError` naming the bad bundle, token or channel.
 */
export function expandSubscription(spec: {
  bundle?: string | undefined;
  tokens?: readonly string[] | undefined;
  channels?: readonly string[] | undefined;
}): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (c: string) => {
    if (!seen.has(c)) {
      seen.add(c);
      out.push(c);
    }
  };
  const tokens = spec.tokens ?? [];
  if (spec.bundle !== undefined) {
    if (!(BUNDLES as readonly string[]).includes(spec.bundle)) {
      throw new TypeError(`unknown bundle ${JSON.stringify(spec.bundle)} (known: ${BUNDLES.join(", ")})`);
    }
    if (tokens.length === 0) throw new TypeError("a bundle needs at least one token");
    for (const token of tokens) {
      if (token !== WILDCARD_TOKEN && !TOKEN.test(token)) {
        throw new TypeError(`invalid token ${JSON.stringify(token)}`);
      }
      for (const category of BUNDLE_CATEGORIES[spec.bundle as BundleName]) add(`${token}.${category}`);
    }
  } else if (tokens.length > 0) {
    throw new TypeError("tokens given without a bundle");
  }
  for (const c of spec.channels ?? []) {
    if (!parseChannel(c)) throw new TypeError(`invalid channel ${JSON.stringify(c)}`);
    add(c);
  }
  if (out.length === 0) throw new TypeError("nothing to subscribe to: give a bundle with tokens, or channels");
  return out;
}
