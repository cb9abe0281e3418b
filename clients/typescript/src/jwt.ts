/** Reads a JWT's `exp` (epoch ms) without verifying it: only to know when to refresh. */
export function jwtExpiresAt(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const json: unknown = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    if (json && typeof json === "object" && "exp" in json && typeof json.exp === "number") {
      return json.exp * 1000;
    }
  } catch {
    // Not a JWT we can read: no proactive refresh, `token_expired` still triggers one.
  }
  return undefined;
}
