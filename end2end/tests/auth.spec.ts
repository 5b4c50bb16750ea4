import { test, expect, type Page } from '@playwright/test';
import { ADMIN, USER, counters, fillSignIn, hydrated, signIn, tokensOf } from './support';

/** register → frogs → admin 403 → sign out → frogs redirects → sign in lands on frogs. */
async function journey(page: Page, javaScript: boolean) {
  const email = `frog-${javaScript ? 'js' : 'nojs'}-${Date.now()}@example.com`;
  await page.goto('/register');
  await hydrated(page, javaScript);
  await page.getByLabel('Name').fill('Pat Puddle');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill('lily-pads-4-all');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('signed-in-as')).toHaveText('Pat Puddle');

  await page.getByRole('link', { name: 'Frogs' }).click();
  await expect(page).toHaveURL(/\/frogs$/);
  await expect(page.getByTestId('frogs').getByRole('listitem')).not.toHaveCount(0);
  await expect(page.getByRole('img', { name: 'Drawing of Fern' })).toBeVisible();

  const admin = await page.goto('/admin');
  expect(admin?.status()).toBe(403);
  await expect(page.getByTestId('forbidden')).toBeVisible();
  await expect(page).toHaveURL(/\/admin$/);

  await hydrated(page, javaScript);
  await page.getByTestId('sign-out').click();
  await expect(page.getByRole('link', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);

  await page.goto('/frogs');
  await expect(page).toHaveURL(/\/login\?next=%2Ffrogs$/);
  await hydrated(page, javaScript);
  await fillSignIn(page, { email, password: 'lily-pads-4-all' });
  await expect(page).toHaveURL(/\/frogs$/);
  await expect(page.getByTestId('frogs')).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveText('Pat Puddle');
}

test.describe('with JavaScript', () => {
  test('register, browse, get refused, sign out, come back', async ({ page }) => {
    await journey(page, true);
  });

  test('a wrong password shows one message and keeps what was typed', async ({ page }) => {
    await page.goto('/login');
    await hydrated(page);
    await fillSignIn(page, { email: USER.email, password: 'not-the-password' });
    await expect(page.getByTestId('form-error')).toHaveText('Wrong email or password.');
    await expect(page.getByLabel('Email')).toHaveValue(USER.email);
    // A plain form post sent back to its page: the error rides the URL leptos_axum writes.
    await expect(page).toHaveURL(/\/login\?/);
  });

  test('a form says it is busy while its post is on the way, and sends it once', async ({ page }) => {
    await page.goto('/login');
    // The post is answered 204 (the page stays as it is), so the busy state can be looked at.
    let posts = 0;
    await page.route('**/api/login', (route) => {
      posts += 1;
      return route.fulfill({ status: 204 });
    });
    await page.getByLabel('Email').fill(USER.email);
    await page.getByLabel('Password').fill(USER.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const busy = page.getByRole('button', { name: 'Signing in…' });
    await expect(busy).toBeDisabled();
    await expect(page.getByTestId('login-form')).toHaveAttribute('aria-busy', 'true');
    expect(posts).toBe(1);
    // A second press, and Enter in a field: nothing more is sent (the route would count a
    // post: none arrives within a second).
    await busy.click({ force: true });
    await page.getByLabel('Password').press('Enter');
    const another = await page.waitForRequest('**/api/login', { timeout: 1000 }).then(() => true, () => false);
    expect(another).toBe(false);
    await expect(busy).toBeDisabled();
    expect(posts).toBe(1);
  });

  test('input kept from a failed form post is typed back into the form', async ({ page, baseURL }) => {
    // Every form is a plain form post: the server keeps the input of one that failed.
    const failed = await page.request.post('/api/register', {
      form: { name: 'Early Bird', email: 'early@example.com', password: 'short', next: '/' },
      headers: { accept: 'text/html', referer: `${baseURL}/register` },
      maxRedirects: 0,
    });
    expect(failed.status()).toBe(302);
    expect(failed.headers()['location']).toContain('__err=');
    // Opened by hand rather than by the site's own redirect: the error in the URL is dropped
    // (a link could carry any message), what was typed is still there.
    await page.goto(failed.headers()['location']);
    await expect(page).toHaveURL(/\/register$/);
    await hydrated(page);
    await expect(page.getByLabel('Name')).toHaveValue('Early Bird');
    await expect(page.getByLabel('Email')).toHaveValue('early@example.com');
    await expect(page.getByTestId('password-error')).toHaveText('');
  });

  test('a link to a protected page while signed out goes to sign-in', async ({ page }) => {
    await signIn(page, USER);
    await page.getByRole('link', { name: 'Account' }).click();
    await expect(page.getByTestId('account-email')).toHaveText(USER.email);
    // Sign out elsewhere (the cookie goes away), then follow a link.
    await page.context().clearCookies();
    await page.getByRole('link', { name: 'Frogs' }).click();
    await expect(page).toHaveURL(/\/login\?next=%2Ffrogs$/);
  });

  test('the admin sees the admin page', async ({ page }) => {
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Admin' }).click();
    await expect(page.getByTestId('admin-stats')).toBeVisible();
  });
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('register, browse, get refused, sign out, come back', async ({ page }) => {
    await journey(page, false);
  });

  test('a wrong password is reported on the page, and the email is kept', async ({ page }) => {
    await page.goto('/login?next=%2Ffrogs');
    await fillSignIn(page, { email: USER.email, password: 'not-the-password' });
    await expect(page.getByTestId('form-error')).toHaveText('Wrong email or password.');
    await expect(page.getByLabel('Email')).toHaveValue(USER.email);
    await expect(page.getByLabel('Password')).toHaveValue('');
    // Taken once: a reload shows the empty form.
    await page.reload();
    await expect(page.getByLabel('Email')).toHaveValue('');
    await fillSignIn(page, USER);
    await expect(page).toHaveURL(/\/frogs$/);
  });
});

test('token canary: no token reaches the browser, in any form', async ({ page, request }) => {
  const seen: { url: string; headers: Record<string, string>; body: string; binary: boolean }[] = [];
  const cspViolations: string[] = [];
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) cspViolations.push(m.text());
  });
  page.on('response', async (r) => {
    const headers = await r.allHeaders();
    let body = '';
    try {
      body = (await r.body()).toString('latin1');
    } catch {
      // Redirects have no body.
    }
    const type = headers['content-type'] ?? '';
    seen.push({ url: r.url(), headers, body, binary: type.includes('wasm') || type.includes('image') });
  });

  await signIn(page, USER);
  for (const path of ['/frogs', '/account', '/admin', '/']) {
    await page.goto(path);
    await hydrated(page);
  }
  await page.getByRole('link', { name: 'Frogs' }).click();
  await expect(page.getByTestId('frogs')).toBeVisible();
  await page.getByRole('link', { name: 'Account' }).click();
  await expect(page.getByTestId('account')).toBeVisible();

  const tokens = await tokensOf(request, USER.email);
  expect(tokens.length).toBeGreaterThan(1);
  expect(seen.length).toBeGreaterThan(10);
  const serverFnCalls = seen.filter((s) => s.url.includes('/api/'));
  expect(serverFnCalls.length).toBeGreaterThan(0);
  for (const s of seen) {
    for (const t of tokens) expect(s.body.includes(t), `a token in the body of ${s.url}`).toBe(false);
    if (!s.binary) expect(s.body.includes('eyJ'), `something JWT-like in ${s.url}`).toBe(false);
    for (const [name, value] of Object.entries(s.headers)) {
      for (const t of tokens) expect(value.includes(t), `a token in header ${name} of ${s.url}`).toBe(false);
      if (name !== 'set-cookie') expect(value.includes('eyJ'), `JWT-like header ${name}`).toBe(false);
    }
  }
  const documentCookie = await page.evaluate(() => document.cookie);
  expect(documentCookie).toBe('');
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  for (const t of tokens) expect(storage.includes(t)).toBe(false);
  expect(storage.includes('eyJ')).toBe(false);
  const cookies = await page.context().cookies();
  expect(cookies.map((c) => c.name)).toEqual(['tokenless_session']);
  expect(cookies[0].httpOnly).toBe(true);
  for (const t of tokens) expect(cookies[0].value.includes(t)).toBe(false);
  expect(cspViolations).toEqual([]);
  expect((await counters(request)).reuse_events).toBe(0);
});
