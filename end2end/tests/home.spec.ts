import { test, expect } from '@playwright/test';

test.describe('home page', () => {
  test('is rendered on the server, with the server function answer in the HTML', async ({ request }) => {
    const response = await request.get('/');
    expect(response.status()).toBe(200);
    const html = await response.text();
    expect(html).toContain('Sign in without handing your browser a token');
    // The status resource resolved during SSR: its answer is in the document itself.
    expect(html).toContain('data-testid="server-status"');
    expect(html).not.toContain('data-hydrated');
  });

  test('only pages with islands download the wasm', async ({ page }) => {
    const fetched: string[] = [];
    page.on('request', (r) => fetched.push(new URL(r.url()).pathname));
    for (const path of ['/login', '/register', '/no/such/page']) {
      await page.goto(path);
      await page.waitForLoadState('load');
      expect(await page.locator('leptos-island').count(), path).toBe(0);
    }
    expect(fetched.filter((p) => p.startsWith('/pkg/') && !p.endsWith('.css'))).toEqual([]);
    expect(fetched).toContain('/forms.js');
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
    expect(fetched).toContain('/pkg/tokenless.wasm');
  });

  test('hydrates: the client marks the page and the counter counts', async ({ page }) => {
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
    const counter = page.getByTestId('counter');
    await expect(counter).toHaveText('Clicked 0 times');
    await counter.click();
    await expect(counter).toHaveText('Clicked 1 time');
    await counter.click();
    await expect(counter).toHaveText('Clicked 2 times');
  });

  test('calls a server function from the hydrated client', async ({ page }) => {
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
    const answered = page.getByTestId('answered-at');
    const first = await answered.textContent();
    const call = page.waitForResponse((r) => r.url().includes('/api/server_status') && r.status() === 200);
    await page.getByTestId('ask-server').click();
    await call;
    await expect(answered).not.toHaveText(first ?? '');
  });

  test('an unknown page is a 404 with a way back', async ({ page }) => {
    const response = await page.goto('/no/such/page');
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  });
});
