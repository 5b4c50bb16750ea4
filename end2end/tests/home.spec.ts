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

  test('asking the server again: pending, a failure says why, a lying answer changes nothing', async ({ page }) => {
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('data-hydrated', 'true');
    const ask = page.getByTestId('ask-server');
    const status = page.getByTestId('server-status');
    const problem = page.locator('.server-status').getByRole('alert');
    const version = await page.getByTestId('version').textContent();
    // Held until the button was pressed twice: one request, the button disabled meanwhile.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let sent = 0;
    await page.route('**/api/server_status', async (route) => {
      sent += 1;
      await held;
      await route.fulfill({ status: 500, contentType: 'application/json', body: '"Failed"' });
    });
    try {
      await ask.click();
      await expect(ask).toBeDisabled();
      await expect(ask).toHaveText('Asking the server…');
      await ask.click({ force: true });
    } finally {
      release();
    }
    await expect(problem).toHaveText('The server could not answer. Please try again.');
    await expect(ask).toBeEnabled();
    expect(sent).toBe(1);
    // An answer that is not what the server says (a number as the version, no clock): shown
    // as a failure, and the facts on the page stay as they were.
    await page.unroute('**/api/server_status');
    await page.route('**/api/server_status', (route) =>
      route.fulfill({ status: 200, contentType: 'application/json', body: '{"version":1,"upstream":"x"}' }),
    );
    await ask.click();
    await expect(problem).toHaveText('The server could not answer. Please try again.');
    await expect(page.getByTestId('version')).toHaveText(version ?? '');
    // The server unreachable: said so.
    await page.unroute('**/api/server_status');
    await page.route('**/api/server_status', (route) => route.abort('connectionrefused'));
    await ask.click();
    await expect(problem).toHaveText(/could not be reached/);
    // The next good answer clears the problem and writes the facts.
    await page.unroute('**/api/server_status');
    const answered = await page.getByTestId('answered-at').textContent();
    await ask.click();
    await expect(page.getByTestId('answered-at')).not.toHaveText(answered ?? '');
    await expect(problem).toHaveCount(0);
    await expect(status).toContainText('Version');
  });

  test('an unknown page is a 404 with a way back', async ({ page }) => {
    const response = await page.goto('/no/such/page');
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  });
});
