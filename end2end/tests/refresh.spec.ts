// Token refresh as a browser lives it: tabs and parallel calls after the access token expired,
// a session revoked upstream, the upstream down and back. The access token is aged inside the
// sealed cookie (test key) instead of waiting for it to expire.
import { test, expect } from '@playwright/test';
import {
  USER,
  addFault,
  clearFaults,
  counters,
  expireAccessToken,
  hydrated,
  revokeUser,
  sessionOf,
  signIn,
} from './support';

test.describe('refresh', () => {
  test.afterEach(async ({ request }) => {
    await clearFaults(request);
  });

  test('two tabs open /frogs after the access token expired: one refresh, no reuse', async ({
    page,
    context,
    request,
  }) => {
    await signIn(page, USER);
    await expireAccessToken(context);
    const before = await counters(request);
    const second = await context.newPage();
    await Promise.all([page.goto('/frogs'), second.goto('/frogs')]);
    for (const tab of [page, second]) {
      await expect(tab.getByTestId('frogs')).toBeVisible();
      await hydrated(tab);
    }
    const after = await counters(request);
    expect((after.refreshes_per_user[USER.email] ?? 0) - (before.refreshes_per_user[USER.email] ?? 0)).toBe(1);
    expect(after.reuse_events).toBe(before.reuse_events);
    expect(after.reuse_events).toBe(0);
    expect((await sessionOf(context)).generation).toBeGreaterThan(1);
  });

  test('several server functions at once after expiry all succeed', async ({ page, context, request }) => {
    await signIn(page, USER);
    await page.goto('/');
    await hydrated(page);
    await expireAccessToken(context);
    const before = await counters(request);
    // What a hydrated page does when several components load at once: parallel server-function
    // calls, all carrying the expired session.
    const statuses = await page.evaluate(async () => {
      const call = () =>
        fetch('/api/frogs', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: '',
        }).then(async (r) => ({ status: r.status, frogs: r.ok ? (await r.json()).length : 0 }));
      return Promise.all([call(), call(), call(), call(), call(), call()]);
    });
    for (const s of statuses) {
      expect(s.status).toBe(200);
      expect(s.frogs).toBeGreaterThan(0);
    }
    const after = await counters(request);
    expect((after.refreshes_per_user[USER.email] ?? 0) - (before.refreshes_per_user[USER.email] ?? 0)).toBe(1);
    expect(after.reuse_events).toBe(0);
    // The refreshed cookie stuck: a navigation needs no further refresh.
    await page.getByRole('link', { name: 'Frogs' }).click();
    await expect(page.getByTestId('frogs')).toBeVisible();
    const later = await counters(request);
    expect(later.refreshes_per_user[USER.email]).toBe(after.refreshes_per_user[USER.email]);
  });

  test('a session revoked upstream ends: the next navigation lands on sign-in with the message', async ({
    page,
    context,
    request,
  }) => {
    await signIn(page, USER);
    await page.goto('/account');
    await hydrated(page);
    await revokeUser(request, USER.email);
    // A link followed: the frogs call is refused (401), the refresh too.
    await page.getByRole('link', { name: 'Frogs' }).click();
    await expect(page).toHaveURL(/\/login\?next=%2Ffrogs&reason=expired$/);
    await expect(page.getByTestId('session-ended')).toBeVisible();
    expect((await context.cookies()).filter((c) => c.name.includes('tokenless_session'))).toEqual([]);
    // And signing in again lands back on the frogs.
    await page.getByLabel('Email').fill(USER.email);
    await page.getByLabel('Password').fill(USER.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(page.getByTestId('frogs')).toBeVisible();
    expect((await counters(request)).reuse_events).toBe(0);
  });

  test('upstream down during refresh: the error state, then recovery without signing in again', async ({
    page,
    context,
    request,
  }) => {
    await signIn(page, USER);
    await expireAccessToken(context);
    const sealed = (await context.cookies()).find((c) => c.name.endsWith('tokenless_session'))!.value;
    await addFault(request, { kind: 'down' });
    const response = await page.goto('/frogs');
    expect(response!.status()).toBe(503);
    await expect(page.getByTestId('unavailable')).toBeVisible();
    const kept = (await context.cookies()).find((c) => c.name.endsWith('tokenless_session'))!.value;
    expect(kept).toBe(sealed);

    await clearFaults(request);
    await page.reload();
    await expect(page.getByTestId('frogs')).toBeVisible();
    await expect(page.getByTestId('signed-in-as')).toBeVisible();
    expect((await counters(request)).reuse_events).toBe(0);
  });
});
