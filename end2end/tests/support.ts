// Helpers shared by the specs: the demo upstream's test controls, signing in, waiting for
// hydration.
import { expect, type Page, type APIRequestContext } from '@playwright/test';

export const CONTROLS = process.env.TOKENLESS_E2E_CONTROLS ?? 'http://127.0.0.1:3101';
export const USER = { email: 'user@example.com', password: 'frogs-are-green', name: 'Dana User' };
export const ADMIN = { email: 'admin@example.com', password: 'admin-frogs-rule', name: 'Ada Admin' };

/** Waits until the wasm client has taken over the page (or returns at once without JS). */
export async function hydrated(page: Page, javaScript = true) {
  if (javaScript) await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
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
