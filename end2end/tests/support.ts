// Helpers shared by the specs: the demo upstream's test controls, signing in, waiting for
// hydration.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { expect, type BrowserContext, type Page, type APIRequestContext, type Route } from '@playwright/test';

export const CONTROLS = process.env.TOKENLESS_E2E_CONTROLS ?? 'http://127.0.0.1:3101';
export const USER = { email: 'user@example.com', password: 'frogs-are-green', name: 'Dana User' };
export const ADMIN = { email: 'admin@example.com', password: 'admin-frogs-rule', name: 'Ada Admin' };

/** Whether the page holds islands, the only parts that load wasm and hydrate. */
export async function hasIslands(page: Page): Promise<boolean> {
  return (await page.locator('leptos-island').count()) > 0;
}

/**
 * Waits until the wasm client has taken over the page's islands. Returns at once without JS,
 * and on pages without islands (plain HTML: nothing to wait for, no wasm is loaded there).
 */
export async function hydrated(page: Page, javaScript = true) {
  if (!javaScript) return;
  await page.waitForLoadState('domcontentloaded');
  if (!(await hasIslands(page))) return;
  await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
}

/**
 * Answers the page's requests to `url` with `answer`, but only once `during` has finished (or
 * failed): what the page shows while its call is on its way is checked in `during`. Replaces
 * any earlier route of `url`. Returns how many requests came, counted when asked.
 */
export async function holdAnswers(
  page: Page,
  url: string,
  answer: (route: Route) => Promise<void>,
  during: () => Promise<void>,
): Promise<() => number> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let sent = 0;
  await page.unroute(url);
  await page.route(url, async (route) => {
    sent += 1;
    await held;
    await answer(route);
  });
  try {
    await during();
  } finally {
    release();
  }
  return () => sent;
}

export async function fillSignIn(page: Page, who: { email: string; password: string }) {
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

export async function signIn(page: Page, who: { email: string; password: string }, javaScript = true) {
  await page.goto('/login');
  await hydrated(page, javaScript);
  await fillSignIn(page, who);
  await expect(page.getByTestId('signed-in-as')).toBeVisible();
}

export async function counters(request: APIRequestContext) {
  const r = await request.get(`${CONTROLS}/_test/counters`);
  expect(r.ok()).toBeTruthy();
  return r.json();
}

/** Every access and refresh token the demo upstream issued to `email`. */
export async function tokensOf(request: APIRequestContext, email: string): Promise<string[]> {
  const r = await request.get(`${CONTROLS}/_test/users/${encodeURIComponent(email)}/tokens`);
  expect(r.ok()).toBeTruthy();
  const t = await r.json();
  return [...t.access_tokens, ...t.refresh_tokens];
}

/** Resets counters, faults and the request log of the demo upstream. */
export async function clearFaults(request: APIRequestContext) {
  const r = await request.delete(`${CONTROLS}/_test/faults`);
  expect(r.ok()).toBeTruthy();
}

export async function addFault(request: APIRequestContext, fault: Record<string, unknown>) {
  const r = await request.post(`${CONTROLS}/_test/faults`, { data: fault });
  expect(r.status()).toBe(204);
}

export async function revokeUser(request: APIRequestContext, email: string) {
  const r = await request.post(`${CONTROLS}/_test/users/${encodeURIComponent(email)}/revoke`);
  expect(r.ok()).toBeTruthy();
}

// The session cookie's envelope (bff/src/seal.rs): version 1, key id, 12-byte nonce, AES-256-GCM
// ciphertext + 16-byte tag, base64url; the cookie's name is the associated data.
const KEY_SPEC = process.env.TOKENLESS_E2E_KEYS ?? '';
const KEY_ID = Number(KEY_SPEC.split(':')[0]);
const KEY = Buffer.from(KEY_SPEC.split(':')[1] ?? '', 'base64');

function aad(name: string) {
  return Buffer.from(`tokenless/v1/${name}`);
}

// The sealed session (bff/src/session.rs, format 4) is postcard: the fields in declaration
// order, unsigned integers as LEB128 varints (the format byte as one raw byte), strings and
// lists prefixed by their length, options as a 0/1 tag.
export interface Session {
  format: number;
  id: string;
  generation: number;
  created_at: number;
  last_seen_at: number;
  tokens: {
    access_token: string;
    access_expires_at: number;
    refresh_token: string | null;
    refresh_expires_at: number | null;
    access_issued_at: number;
  };
  profile: { id: string; name: string; email: string; roles: string[] };
  /** The OpenID provider's sign-in, for a session that began at one. */
  provider: { issuer: string; subject: string; session_id: string | null; id_token: string } | null;
}

function decodeSession(bytes: Buffer): Session {
  let at = 0;
  const byte = () => {
    if (at >= bytes.length) throw new Error('the session ends early');
    return bytes[at++];
  };
  const uint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      const b = byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
    }
  };
  const str = () => {
    const len = uint();
    if (at + len > bytes.length) throw new Error('the session ends early');
    at += len;
    return bytes.toString('utf8', at - len, at);
  };
  const option = <T>(read: () => T) => (byte() === 1 ? read() : null);
  const session: Session = {
    format: byte(),
    id: str(),
    generation: uint(),
    created_at: uint(),
    last_seen_at: uint(),
    tokens: {
      access_token: str(),
      access_expires_at: uint(),
      refresh_token: option(str),
      refresh_expires_at: option(uint),
      access_issued_at: uint(),
    },
    profile: { id: str(), name: str(), email: str(), roles: Array.from({ length: uint() }, str) },
    provider: option(() => ({ issuer: str(), subject: str(), session_id: option(str), id_token: str() })),
  };
  expect(session.format).toBe(4);
  expect(at, 'nothing after the session').toBe(bytes.length);
  return session;
}

function encodeSession(session: Session): Buffer {
  const out: number[] = [];
  const uint = (value: number) => {
    for (; value >= 0x80; value = Math.floor(value / 128)) out.push((value % 128) | 0x80);
    out.push(value);
  };
  const str = (value: string) => {
    const utf8 = Buffer.from(value, 'utf8');
    uint(utf8.length);
    out.push(...utf8);
  };
  const option = <T>(value: T | null, write: (v: T) => void) => {
    if (value === null) out.push(0);
    else {
      out.push(1);
      write(value);
    }
  };
  out.push(session.format);
  str(session.id);
  uint(session.generation);
  uint(session.created_at);
  uint(session.last_seen_at);
  str(session.tokens.access_token);
  uint(session.tokens.access_expires_at);
  option(session.tokens.refresh_token, str);
  option(session.tokens.refresh_expires_at, uint);
  uint(session.tokens.access_issued_at);
  str(session.profile.id);
  str(session.profile.name);
  str(session.profile.email);
  uint(session.profile.roles.length);
  session.profile.roles.forEach(str);
  option(session.provider, (p) => {
    str(p.issuer);
    str(p.subject);
    option(p.session_id, str);
    str(p.id_token);
  });
  return Buffer.from(out);
}

function openSealed(name: string, value: string): Session {
  const envelope = Buffer.from(value, 'base64url');
  expect(envelope[0]).toBe(1);
  expect(envelope[1]).toBe(KEY_ID);
  const decipher = createDecipheriv('aes-256-gcm', KEY, envelope.subarray(2, 14));
  decipher.setAAD(aad(name));
  decipher.setAuthTag(envelope.subarray(envelope.length - 16));
  const plain = Buffer.concat([decipher.update(envelope.subarray(14, envelope.length - 16)), decipher.final()]);
  return decodeSession(plain);
}

function seal(name: string, session: Session): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', KEY, nonce);
  cipher.setAAD(aad(name));
  const body = Buffer.concat([cipher.update(encodeSession(session)), cipher.final()]);
  return Buffer.concat([Buffer.from([1, KEY_ID]), nonce, body, cipher.getAuthTag()]).toString('base64url');
}

/** The session sealed in the browser's cookie. */
export async function sessionOf(context: BrowserContext): Promise<Session> {
  const cookie = (await context.cookies()).find((c) => c.name.endsWith('tokenless_session'));
  expect(cookie, 'a session cookie').toBeTruthy();
  return openSealed(cookie!.name, cookie!.value);
}

/** Ages the access token in the browser's cookie past its expiry, as time would. */
export async function expireAccessToken(context: BrowserContext) {
  const cookie = (await context.cookies()).find((c) => c.name.endsWith('tokenless_session'));
  expect(cookie, 'a session cookie').toBeTruthy();
  const session = openSealed(cookie!.name, cookie!.value);
  session.tokens.access_expires_at = Math.floor(Date.now() / 1000) - 1;
  await context.addCookies([{ ...cookie!, value: seal(cookie!.name, session) }]);
}
