import { test, expect } from '@playwright/test';
import { holdAnswers, hydrated } from './support';

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
    const answered = page.locator('[data-fact="answered-at"]');
    const first = await answered.textContent();
    const call = page.waitForResponse((r) => r.url().includes('/api/server_status') && r.status() === 200);
    await page.getByTestId('ask-server').click();
    await call;
    await expect(answered).not.toHaveText(first ?? '');
  });

  test('asking the server again: pending, a failure says why, a lying answer changes nothing', async ({ page }) => {
    await page.goto('/');
    await hydrated(page);
    const ask = page.getByTestId('ask-server');
    const problem = page.locator('.server-status').getByRole('alert');
    const fact = (name: string) => page.locator(`[data-fact="${name}"]`);
    const facts = async () => Promise.all(['version', 'upstream', 'answered-at'].map((f) => fact(f).textContent()));
    const before = await facts();
    const status = '**/api/server_status';
    // Held until the button was pressed twice: one request, the button disabled meanwhile.
    const sent = await holdAnswers(
      page,
      status,
      (route) => route.fulfill({ status: 500, contentType: 'application/json', body: '"Failed"' }),
      async () => {
        await ask.click();
        await expect(ask).toBeDisabled();
        await expect(ask).toHaveText('Asking the server…');
        await ask.click({ force: true });
      },
    );
    await expect(problem).toHaveText('The server could not answer. Please try again.');
    await expect(ask).toBeEnabled();
    expect(sent()).toBe(1);
    // Answers that are not what the server says: a good version and upstream beside a clock
    // that is no whole number, then a version that is no string. Each is a failure (held until
    // the previous problem is gone, so the alert is this press's), and no fact changes.
    for (const lie of [
      '{"version":"9.9.9","upstream":"elsewhere","answered_at_ms":-5}',
      '{"version":1,"upstream":"elsewhere","answered_at_ms":1700000000000}',
    ]) {
      const sent = await holdAnswers(
        page,
        status,
        (route) => route.fulfill({ status: 200, contentType: 'application/json', body: lie }),
        async () => {
          await ask.click();
          await expect(problem).toHaveCount(0);
        },
      );
      await expect(problem).toHaveText('The server could not answer. Please try again.');
      expect(sent(), lie).toBe(1);
      expect(await facts(), lie).toEqual(before);
    }
    // The server unreachable: said so.
    await page.unroute('**/api/server_status');
    await page.route('**/api/server_status', (route) => route.abort('connectionrefused'));
    await ask.click();
    await expect(problem).toHaveText(/could not be reached/);
    // The next good answer clears the problem and writes the facts.
    await page.unroute('**/api/server_status');
    await ask.click();
    await expect(fact('answered-at')).not.toHaveText(before[2] ?? '');
    await expect(problem).toHaveCount(0);
    await expect(fact('version')).toHaveText(before[0] ?? '');
  });

  test('a client without one of the page\'s islands says so and never marks the page hydrated', async ({ page }) => {
    // The page as a server from another build would send it: an island the client does not have.
    await page.route('**/', async (route) => {
      const response = await route.fetch();
      const html = (await response.text()).replace('data-component="ServerStatus_', 'data-component="Gone_');
      await route.fulfill({ response, body: html });
    });
    const missing = page.waitForEvent('console', (m) => m.type() === 'error' && m.text().includes('No island called Gone_'));
    await page.goto('/');
    await missing;
    // The other island still works, and the loader has finished with the page.
    const counter = page.getByTestId('counter');
    await counter.click();
    await expect(counter).toHaveText('Clicked 1 time');
    expect(await page.locator('html').getAttribute('data-hydrated')).toBeNull();
  });

  test('an unknown page is a 404 with a way back', async ({ page }) => {
    const response = await page.goto('/no/such/page');
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  });
});
