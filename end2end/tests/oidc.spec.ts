// Signing in through a real OpenID provider (node-oidc-provider, started by playwright.config.ts)
// in a real browser: the provider's own sign-in and consent pages, the callback, refresh after
// expiry in two tabs, sign-out at the provider, its back-channel logout, forged and replayed
// callbacks, and no token ever reaching the browser.
import { test, expect, type Page, type Response, type BrowserContext } from '@playwright/test';
import { expireAccessToken, hydrated, sessionOf } from './support';

const PROVIDER = process.env.TOKENLESS_E2E_PROVIDER ?? 'http://127.0.0.1:3130';

/** What the provider saw: refresh grants, reused refresh tokens, back-channel logouts sent. */
async function providerCounters(page: Page): Promise<{ refreshes: number; reuse: number; backchannel: number }> {
  const r = await page.request.get(`${PROVIDER}/_test/counters`);
  expect(r.ok()).toBeTruthy();
  return r.json();
}

/** At the provider's pages: its sign-in form as `login` (any password), then its consent. */
async function atProvider(page: Page, login = 'dana') {
  await expect(page).toHaveURL(new RegExp(`^${PROVIDER}/interaction/`));
  const form = page.locator('input[name="login"]');
  if (await form.isVisible()) {
    await form.fill(login);
    await page.locator('input[name="password"]').fill('any');
    await page.getByRole('button', { name: 'Sign-in' }).click();
  }
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** Signs in from a protected page: sign-in page → "Continue with Test ID" → provider → back. */
async function signInThroughProvider(page: Page) {
  await page.goto('/account');
  await expect(page).toHaveURL(/\/login\?next=%2Faccount/);
  await hydrated(page);
  await page.getByRole('link', { name: 'Continue with Test ID' }).click();
  await atProvider(page);
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByText('Dana User').first()).toBeVisible();
}

/** Everything the browser receives from now on: headers and bodies, of every origin. Await
 * `all()` for the whole of it (bodies are read as they arrive). */
function recordResponses(page: Page): { all: () => Promise<string> } {
  const seen: Promise<string>[] = [];
  page.on('response', (response: Response) => {
    const head = `${response.url()}\n${JSON.stringify(response.headers())}\n`;
    // A redirect has no body to read; what it says is in its headers.
    seen.push(response.text().then((body) => head + body, () => head));
  });
  return { all: async () => (await Promise.all(seen)).join('\n') };
}

async function browserState(page: Page, context: BrowserContext): Promise<string> {
  const script = await page.evaluate(() =>
    JSON.stringify({ cookie: document.cookie, local: { ...localStorage }, session: { ...sessionStorage } }),
  );
  return script + JSON.stringify((await context.cookies()).map((c) => [c.name, c.value]));
}

test.describe('OpenID Connect', () => {
  test('sign in at the provider, land on the page asked for, and no token reaches the browser', async ({
    page,
    context,
  }) => {
    const seen = recordResponses(page);
    await signInThroughProvider(page);
    await hydrated(page);
    // Browse: a page opened directly, one reached by a link.
    await page.goto('/');
    await hydrated(page);
    await page.getByRole('link', { name: 'Account' }).click();
    await expect(page).toHaveURL(/\/account$/);
    await expect(page.getByText('user@example.com').first()).toBeVisible();

    const session = await sessionOf(context);
    expect(session.provider?.issuer).toBe(PROVIDER);
    expect(session.provider?.subject).toBe('dana');
    const tokens = [session.tokens.access_token, session.tokens.refresh_token, session.provider?.id_token];
    for (const token of tokens) expect(token && token.length).toBeGreaterThan(10);
    const everything = (await seen.all()) + (await browserState(page, context));
    expect(everything).toContain('Dana User');
    for (const token of tokens) expect(everything.includes(token!), 'a token reached the browser').toBe(false);
    // Only the sealed HttpOnly cookie holds the session: scripts see none of it.
    expect(await page.evaluate(() => document.cookie)).not.toContain('tokenless_session');
  });

  test('after expiry, two tabs and parallel calls cost the provider exactly one refresh, never a reuse', async ({
    page,
    context,
  }) => {
    await signInThroughProvider(page);
    for (let round = 1; round <= 2; round++) {
      await expireAccessToken(context);
      const before = await providerCounters(page);
      const second = await context.newPage();
      await Promise.all([page.goto('/account'), second.goto('/account')]);
      for (const tab of [page, second]) {
        await expect(tab.getByText('Dana User').first()).toBeVisible();
        await hydrated(tab);
      }
      // And server functions in parallel from the hydrated page, once more after expiry.
      await expireAccessToken(context);
      const statuses = await page.evaluate(async () => {
        const call = () =>
          fetch('/api/account', {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            body: '',
          }).then((r) => r.status);
        return Promise.all([call(), call(), call(), call(), call()]);
      });
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
      const after = await providerCounters(page);
      expect(after.refreshes - before.refreshes, `round ${round}: one refresh per expiry`).toBe(2);
      expect(after.reuse).toBe(0);
      await second.close();
    }
  });

  test('signing out ends the session here and at the provider, and comes back signed out', async ({ page }) => {
    await signInThroughProvider(page);
    await hydrated(page);
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The provider asks; yes.
    await expect(page).toHaveURL(new RegExp(`^${PROVIDER}/session/end`));
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await expect(page).toHaveURL(/127\.0\.0\.1:\d+\/$/);
    await expect(page.getByRole('link', { name: 'Sign in' }).first()).toBeVisible();
    await page.goto('/account');
    await expect(page).toHaveURL(/\/login\?next=%2Faccount/);
    // The provider's session is over: signing in again asks for the login, not only consent.
    await page.getByRole('link', { name: 'Continue with Test ID' }).click();
    await expect(page.locator('input[name="login"]')).toBeVisible();
  });

  test("the provider's back-channel logout signs the browser out on its next request", async ({ page }) => {
    await signInThroughProvider(page);
    const before = await providerCounters(page);
    // Signed out at the provider itself (another app, the provider's account page...).
    await page.goto(`${PROVIDER}/session/end?client_id=tokenless`);
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await expect(page).toHaveURL(new RegExp(`^${PROVIDER}/session/end/success`));
    expect((await providerCounters(page)).backchannel).toBe(before.backchannel + 1);
    await page.goto('/account');
    await expect(page).toHaveURL(/\/login\?next=%2Faccount/);
  });

  test('forged, replayed and tampered callbacks sign nobody in', async ({ page, context }) => {
    // A state this browser never began.
    const forged = await page.goto('/auth/callback?code=anything&state=forged');
    expect(forged?.status()).toBe(400);
    await expect(page.getByText('not valid in this browser')).toBeVisible();

    // A real callback, then the same again.
    let callback = '';
    page.on('request', (request) => {
      if (request.url().includes('/auth/callback?')) callback = request.url();
    });
    await signInThroughProvider(page);
    expect(callback).toContain('code=');
    const replayed = await page.goto(callback);
    expect(replayed?.status()).toBe(400);
    await page.goto('/account');
    await expect(page.getByText('Dana User').first()).toBeVisible();

    // A pending sign-in whose cookie was tampered with on the way: refused, no session.
    const other = await context.browser()!.newContext();
    const tab = await other.newPage();
    await tab.goto(new URL('/auth/login?next=%2Faccount', page.url()).toString());
    await expect(tab).toHaveURL(new RegExp(`^${PROVIDER}/interaction/`));
    const pending = (await other.cookies()).find((c) => c.name.includes('tokenless_session_oidc_'));
    expect(pending, 'the pending sign-in cookie').toBeTruthy();
    const flipped = pending!.value.slice(0, -2) + (pending!.value.endsWith('AA') ? 'BB' : 'AA');
    await other.addCookies([{ ...pending!, value: flipped }]);
    await atProvider(tab);
    await expect(tab.getByText('not valid in this browser')).toBeVisible();
    expect((await other.cookies()).some((c) => c.name.endsWith('tokenless_session'))).toBe(false);
    await other.close();
  });
});
