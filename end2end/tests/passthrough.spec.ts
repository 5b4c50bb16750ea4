// The upstream passthrough from a real browser: the croak button on /frogs calls the upstream
// through /api/upstream with no token in the page; it keeps working after the access token
// expired (one refresh); a press while a croak is on its way sends nothing; a failure shows next
// to its button; an ended session goes to sign in; another site cannot use it; paths outside the
// allowlist are 404.
import { test, expect, type Locator, type Page } from '@playwright/test';
import { USER, counters, expireAccessToken, holdAnswers, hydrated, signIn } from './support';

/** Frog `id`'s croak button (the island finds it by `data-frog` too). */
function croakButton(page: Page, id: number): Locator {
  return page.locator(`button[data-frog="${id}"]`);
}

/** Where frog `id`'s croak count shows. */
function croakCount(page: Page, id: number): Locator {
  return page.locator('.croak', { has: croakButton(page, id) }).getByRole('status');
}

function croaksIn(text: string | null): number {
  const m = /(\d+) croaks?/.exec(text ?? '');
  expect(m, `a croak count in ${JSON.stringify(text)}`).toBeTruthy();
  return Number(m![1]);
}

test.describe('passthrough', () => {
  test('the croak button calls the upstream from the browser, also after the token expired', async ({
    page,
    context,
    request,
  }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    await croakButton(page, 1).click();
    await expect(croakCount(page, 1)).toHaveText(/\d+ croaks?/);
    const first = croaksIn(await croakCount(page, 1).textContent());

    await expireAccessToken(context);
    const before = await counters(request);
    await croakButton(page, 1).click();
    await expect(croakCount(page, 1)).toHaveText(`${first + 1} croaks`);
    const after = await counters(request);
    expect(after.refreshes_per_user[USER.email] - (before.refreshes_per_user[USER.email] ?? 0)).toBe(1);
    expect(after.reuse_events).toBe(0);
  });

  test('each croak button croaks its own frog', async ({ page }) => {
    // The island takes no props: a button's frog is in the attributes the server rendered.
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    for (const id of [3, 8]) {
      const call = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(`/api/upstream/frogs/${id}/croaks`));
      await croakButton(page, id).click();
      await call;
      await expect(croakCount(page, id)).toHaveText(/\d+ croaks?/);
    }
    await expect(croakCount(page, 1)).toHaveText('');
  });

  test('a croak on its way disables its button, and a second press sends nothing', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    // The answer is held until the button has been pressed twice.
    const button = croakButton(page, 2);
    const sent = await holdAnswers(
      page,
      '**/api/upstream/frogs/2/croaks',
      (route) => route.continue(),
      async () => {
        await button.click();
        await expect(button).toBeDisabled();
        await expect(button).toHaveText('Croaking…');
        // A press on the disabled button: nothing happens, and nothing is sent.
        await button.click({ force: true });
      },
    );
    await expect(croakCount(page, 2)).toHaveText(/\d+ croaks?/);
    await expect(button).toBeEnabled();
    await expect(button).toHaveText('Croak');
    expect(sent()).toBe(1);
  });

  test('a croak that fails says why next to its button, and the next press clears it', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    await page.route('**/api/upstream/frogs/4/croaks', (route) =>
      route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"unavailable","message":""}' }),
    );
    await croakButton(page, 4).click();
    const problem = page.locator('.croak', { has: croakButton(page, 4) }).getByRole('alert');
    await expect(problem).toHaveText(/unavailable right now/);
    await expect(croakCount(page, 4)).toHaveText('');
    // Other frogs show nothing of it.
    await expect(page.locator('.croak', { has: croakButton(page, 5) }).getByRole('alert')).toHaveCount(0);
    await page.unroute('**/api/upstream/frogs/4/croaks');
    await croakButton(page, 4).click();
    await expect(croakCount(page, 4)).toHaveText(/\d+ croaks?/);
    await expect(problem).toHaveCount(0);
  });

  test('a croak the BFF asks to resend is sent once more, and a second retry in a row goes to sign in', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    // The BFF renewed the token after the upstream refused the call (401 `retry`): the client
    // sends it again, once, and shows the count of the second answer.
    let sent = 0;
    await page.route('**/api/upstream/frogs/3/croaks', (route) => {
      sent += 1;
      if (sent === 1) {
        return route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"retry","message":""}' });
      }
      return route.continue();
    });
    await croakButton(page, 3).click();
    await expect(croakCount(page, 3)).toHaveText(/\d+ croaks?/);
    expect(sent).toBe(2);
    // A second `retry` in a row is not resent again: like any other 401 it means signing in
    // (not as an ended session: no `reason=expired`).
    sent = 0;
    await page.unroute('**/api/upstream/frogs/3/croaks');
    await page.route('**/api/upstream/frogs/3/croaks', (route) => {
      sent += 1;
      return route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"retry","message":""}' });
    });
    await croakButton(page, 3).click();
    await expect(page).toHaveURL(/\/login\?next=%2Ffrogs$/);
    expect(sent).toBe(2);
  });

  test('a croak answer that is not whole numbers in range is not shown', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    const problem = page.locator('.croak', { has: croakButton(page, 7) }).getByRole('alert');
    for (const lie of ['{"id":7,"croaks":-1}', '{"id":7,"croaks":1.5}', '{"id":"7","croaks":2}', '[1,2]', 'not json']) {
      // Each answer is held until the previous press's problem is gone, so the one shown next
      // is this answer's.
      const sent = await holdAnswers(
        page,
        '**/api/upstream/frogs/7/croaks',
        (route) => route.fulfill({ status: 200, contentType: 'application/json', body: lie }),
        async () => {
          await croakButton(page, 7).click();
          await expect(problem).toHaveCount(0);
        },
      );
      await expect(problem, lie).toHaveText('The answer could not be read.');
      expect(sent(), lie).toBe(1);
      await expect(croakCount(page, 7), lie).toHaveText('');
      await expect(croakButton(page, 7)).toBeEnabled();
    }
  });

  test('a croak after the session ended goes to sign in, with the way back to the frogs', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    await page.route('**/api/upstream/frogs/6/croaks', (route) =>
      route.fulfill({
        status: 401,
        contentType: 'application/json',
        body: '{"error":"session_expired","message":"Your session ended."}',
      }),
    );
    await croakButton(page, 6).click();
    await page.waitForURL((url) => url.pathname === '/login');
    const url = new URL(page.url());
    expect(url.searchParams.get('next')).toBe('/frogs');
    expect(url.searchParams.get('reason')).toBe('expired');
    await expect(page.getByText('Your session ended. Please sign in again.')).toBeVisible();
  });

  test('another site cannot call it, by script or by form', async ({ page, request }) => {
    await signIn(page, USER);
    const target = new URL('/api/upstream/frogs/1/croaks', page.url()).toString();
    const croaksBefore = (await counters(request)).requests['POST /frogs/1/croaks'] ?? 0;
    // A page on another site, served by Playwright under its own origin.
    await page.route('http://evil.test/**', (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<html><body><form id="f" method="post" action="${target}"></form></body></html>`,
      }),
    );
    await page.goto('http://evil.test/');
    const outcome = await page.evaluate(async (url) => {
      const results: string[] = [];
      try {
        await fetch(url, { method: 'POST', credentials: 'include', mode: 'no-cors' });
        results.push('no-cors sent');
      } catch {
        results.push('no-cors failed');
      }
      try {
        const r = await fetch(url, { method: 'POST', credentials: 'include', headers: { 'x-csrf': '1' } });
        results.push(`cors ${r.status}`);
      } catch {
        results.push('cors blocked');
      }
      return results;
    }, target);
    expect(outcome[1]).toBe('cors blocked');
    const formAnswer = page.waitForResponse((r) => r.url() === target);
    await page.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit());
    expect((await formAnswer).status()).toBe(403);
    const croaksAfter = (await counters(request)).requests['POST /frogs/1/croaks'] ?? 0;
    expect(croaksAfter).toBe(croaksBefore);
  });

  test('a path outside the allowlist is 404', async ({ page }) => {
    await signIn(page, USER);
    await page.goto('/frogs');
    await hydrated(page);
    const statuses = await page.evaluate(async () => {
      const get = (path: string) =>
        fetch(path, { headers: { 'x-csrf': '1', accept: 'application/json' } }).then((r) => r.status);
      return [
        await get('/api/upstream/frogs'),
        await get('/api/upstream/admin/stats'),
        await get('/api/upstream/frogs/%2e%2e/admin/stats'),
        await get('/api/upstream/userinfo'),
      ];
    });
    expect(statuses).toEqual([200, 404, 404, 404]);
  });
});
