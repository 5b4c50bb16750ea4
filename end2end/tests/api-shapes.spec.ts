// The seeds' kind of backend in a real browser: the demo upstream in seed 003's shape (access
// token in JSON, refresh token in a cookie) and seed 002's (both tokens only in cookies), one
// project each (playwright.config.ts). The journeys of auth.spec.ts, with and without JavaScript:
// what the browser holds is only Tokenless's sealed cookie, never the API's own cookies or tokens.
import { test, expect, type APIRequestContext, type Page } from '@playwright/test';
import { USER, expireAccessToken, fillSignIn, hydrated } from './support';

/** The test controls of the server this project runs against (its port + 1). */
function controls(baseURL: string | undefined): string {
  const url = new URL(baseURL ?? 'http://127.0.0.1:3110');
  url.port = String(Number(url.port) + 1);
  return url.origin;
}

async function refreshGrants(request: APIRequestContext, baseURL: string | undefined): Promise<number> {
  const r = await request.get(`${controls(baseURL)}/_test/counters`);
  expect(r.ok()).toBeTruthy();
  return (await r.json()).grants?.refresh_token ?? 0;
}

async function tokensOf(request: APIRequestContext, baseURL: string | undefined, email: string) {
  const r = await request.get(`${controls(baseURL)}/_test/users/${email}/tokens`);
  expect(r.ok()).toBeTruthy();
  const t = await r.json();
  return [...t.access_tokens, ...t.refresh_tokens] as string[];
}

async function journey(page: Page, request: APIRequestContext, baseURL: string | undefined, javaScript: boolean) {
  await page.goto('/frogs');
  await expect(page).toHaveURL(/\/login\?next=%2Ffrogs$/);
  await hydrated(page, javaScript);
  await fillSignIn(page, USER);
  await expect(page).toHaveURL(/\/frogs$/);
  await expect(page.getByRole('img', { name: 'Drawing of Fern' })).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveText(USER.name);

  // Only Tokenless's cookie: the API's access_token / refresh_token cookies stayed on the server.
  const names = (await page.context().cookies()).map((c) => c.name);
  expect(names).toEqual(['tokenless_session']);
  const html = await page.content();
  for (const token of await tokensOf(request, baseURL, USER.email)) {
    expect(html).not.toContain(token);
    expect((await page.context().cookies()).some((c) => c.value.includes(token))).toBe(false);
  }

  // An expired access token is refreshed while the page renders: exactly one refresh.
  const before = await refreshGrants(request, baseURL);
  await expireAccessToken(page.context());
  await page.reload();
  await expect(page.getByTestId('frogs')).toBeVisible();
  expect(await refreshGrants(request, baseURL)).toBe(before + 1);

  await hydrated(page, javaScript);
  await page.getByTestId('sign-out').click();
  await expect(page.getByRole('link', { name: 'Sign in' })).toBeVisible();
  await page.goto('/frogs');
  await expect(page).toHaveURL(/\/login\?next=%2Ffrogs$/);
}

for (const javaScript of [true, false]) {
  test.describe(javaScript ? 'with JavaScript' : 'without JavaScript', () => {
    test.use({ javaScriptEnabled: javaScript });

    test('sign in, browse, refresh, sign out', async ({ page, request, baseURL }) => {
      await journey(page, request, baseURL, javaScript);
    });

    test('register where the API allows it, or be told it does not', async ({ page, baseURL }) => {
      const shape = test.info().project.name;
      const email = `shape-${shape}-${javaScript ? 'js' : 'nojs'}-${Date.now()}@example.com`;
      await page.goto('/register');
      await hydrated(page, javaScript);
      await page.getByLabel('Name').fill('Pat Puddle');
      await page.getByLabel('Email').fill(email);
      await page.getByLabel('Password', { exact: true }).fill('lily-pads-4-all');
      await page.getByRole('button', { name: 'Create account' }).click();
      if (shape === 'seed003') {
        await expect(page).toHaveURL(/\/$/);
        await expect(page.getByTestId('signed-in-as')).toHaveText('Pat Puddle');
      } else {
        await expect(page.getByTestId('form-error')).toHaveText('New accounts cannot be created here.');
        await expect(page).toHaveURL(new RegExp(`^${baseURL}/register`));
      }
    });
  });
}
