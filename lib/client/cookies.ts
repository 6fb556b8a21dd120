// --isolate-cookies: a tunnel's app may set cookies for the server's whole domain
// (`Domain=tunnel.example`), which every other tunnel then receives. This drops such
// a Domain attribute from Set-Cookie, so the cookie stays with the tunnel's own host.

import { type MessageHead, rebuildHead } from "../http/head.ts";

/**
 * Whether a cookie's `Domain` value (as the app wrote it) names a parent of
 * `host` (the tunnel's public host, lowercase): the apex, or further up.
 */
export function namesParent(domain: string, host: string): boolean {
  const name = domain.trim().replace(/^\./, "").toLowerCase();
  return name !== "" && name !== host && host.endsWith("." + name);
}

/** `value` of a Set-Cookie field without a Domain attribute naming a parent of `host`. */
export function isolateCookie(value: string, host: string): string {
  const parts = value.split(";");
  const kept = parts.filter((part, i) => {
    if (i === 0) return true; // name=value
    const eq = part.indexOf("=");
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    return !(name === "domain" && eq >= 0 && namesParent(part.slice(eq + 1), host));
  });
  return kept.length === parts.length ? value : kept.join(";");
}

/**
 * A response head with every Set-Cookie isolated to `host`, as bytes (CRLF line
 * ends); undefined when no field had to change, so the head goes on as it came.
 */
export function isolateCookies(head: MessageHead, host: string): Uint8Array | undefined {
  let changed = false;
  const bytes = rebuildHead(head, (i) => {
    const value = head.value(i);
    if (!head.nameIs(i, "set-cookie")) return value;
    const isolated = isolateCookie(value, host);
    if (isolated !== value) changed = true;
    return isolated;
  });
  return changed ? bytes : undefined;
}
